//! `punctual limit`: rate and concurrency limits per key (the library's `Queue::set_limit` and
//! friends). Input is checked before connecting; `ls` creates nothing.

use punctual::Limit;

use crate::cli::{LimitCommand, LimitLsArgs, LimitRmArgs, LimitSetArgs};
use crate::input::format_duration;
use crate::{CmdResult, Ctx, Failure};

pub(crate) async fn run(ctx: &Ctx, command: LimitCommand) -> CmdResult {
    match command {
        LimitCommand::Set(args) => set(ctx, args).await,
        LimitCommand::Ls(args) => ls(ctx, args).await,
        LimitCommand::Rm(args) => rm(ctx, args).await,
    }
}

fn describe(limit: &Limit) -> String {
    let mut parts = Vec::new();
    if let Some((n, per)) = limit.rate {
        parts.push(format!("rate {n}/{}", format_duration(per)));
    }
    if let Some(c) = limit.concurrency {
        parts.push(format!("concurrency {c}"));
    }
    parts.join(", ")
}

async fn set(ctx: &Ctx, args: LimitSetArgs) -> CmdResult {
    if args.rate.is_none() && args.concurrency.is_none() {
        return Err(Failure::Input(
            "give --rate N/PERIOD, --concurrency C or both".to_owned(),
        ));
    }
    let limit = Limit {
        rate: args.rate,
        concurrency: args.concurrency,
    };
    punctual::check_limit(&args.key, &limit).map_err(|e| ctx.fail(e))?;
    let queue = ctx.queue(&args.queue).await?;
    queue
        .set_limit(&args.key, limit)
        .await
        .map_err(|e| ctx.fail(e))?;
    outln!("limit {:?}: {}", args.key, describe(&limit));
    Ok(())
}

async fn ls(ctx: &Ctx, args: LimitLsArgs) -> CmdResult {
    let (rules, deferred) = match ctx.maybe_queue(&args.queue).await? {
        Some(queue) => (
            queue.limits().await.map_err(|e| ctx.fail(e))?,
            queue.limit_deferrals().await.map_err(|e| ctx.fail(e))?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    if args.json {
        outln!("{}", to_json(&rules, deferred));
        return Ok(());
    }
    for (key, limit) in &rules {
        outln!("{key}\t{}", describe(limit));
    }
    for (key, n) in &deferred {
        outln!("deferred\t{key}\t{n}");
    }
    Ok(())
}

/// A queue's limit rules and deferral counts as JSON (`limit ls --json`, the HTTP API).
pub(crate) fn to_json(
    rules: &[(String, punctual::Limit)],
    deferred: Vec<(String, u64)>,
) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = rules
        .iter()
        .map(|(key, l)| {
            serde_json::json!({
                "key": key,
                "rate": l.rate.map(|(n, _)| n),
                "per": l.rate.map(|(_, per)| format_duration(per)),
                "concurrency": l.concurrency,
            })
        })
        .collect();
    let deferred: serde_json::Map<String, serde_json::Value> = deferred
        .into_iter()
        .map(|(key, n)| (key, n.into()))
        .collect();
    serde_json::json!({"rules": rules, "deferred": deferred})
}

async fn rm(ctx: &Ctx, args: LimitRmArgs) -> CmdResult {
    let queue = ctx.existing_queue(&args.queue).await?;
    if !queue
        .remove_limit(&args.key)
        .await
        .map_err(|e| ctx.fail(e))?
    {
        return Err(Failure::Runtime(format!(
            "no limit {:?} in queue {:?}",
            args.key, args.queue
        )));
    }
    outln!("removed limit {:?}", args.key);
    Ok(())
}
