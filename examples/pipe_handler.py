"""A long-lived job handler for `punctual work QUEUE --pipe 'python3 examples/pipe_handler.py'`.

punctual writes one job per line on stdin, as JSON: {"id", "queue", "attempt", "max_attempts",
"kind", "data"}. The handler answers each with one verdict line on stdout. stdout is the
protocol: log to stderr. Only the standard library is needed.
"""
import json
import sys


def handle(job):
    """Sends a reminder (here: prints it to stderr) and says what became of the job."""
    data = job["data"] or {}
    if data.get("snooze"):
        return {"outcome": "snooze", "in": data["snooze"]}
    if data.get("fail_until", 0) >= job["attempt"]:
        return {"outcome": "retry", "in": "100ms", "error": f"attempt {job['attempt']} failed"}
    if "to" not in data:
        return {"outcome": "fail", "error": "no recipient: retrying will not help"}
    print(f"reminder for {data['to']}: {data.get('text', '')}", file=sys.stderr, flush=True)
    return {"outcome": "done", "result": {"sent_to": data["to"]}}


for line in sys.stdin:
    job = json.loads(line)
    try:
        verdict = handle(job)
    except Exception as error:  # a bug in one job must not stop the handler
        verdict = {"outcome": "retry", "error": f"{type(error).__name__}: {error}"}
    sys.stdout.write(json.dumps(verdict) + "\n")
    sys.stdout.flush()
