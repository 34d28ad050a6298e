//! A TCP proxy in front of a test redis-server, for faults a real server cannot be asked to
//! make: a reply lost after the command ran, and a server that accepts nothing.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Default)]
struct State {
    /// Cut the connection that sends a request containing these bytes (once).
    trigger: Mutex<Option<Vec<u8>>>,
    /// Replies lost so far.
    dropped: AtomicU32,
    /// Connections accepted so far.
    accepted: AtomicU32,
    /// While true, connections are closed as soon as they are accepted.
    down: AtomicBool,
}

/// Forwards 127.0.0.1:`port()` to a redis-server. Stops when dropped.
pub struct Proxy {
    port: u16,
    state: Arc<State>,
    /// Bumped to cut every open connection.
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to the redis-server on `target` (a port on 127.0.0.1).
    pub async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let (generation, _) = watch::channel(0u64);
        let shared = state.clone();
        let cuts = generation.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                if shared.down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                tokio::spawn(pipe(client, server, shared.clone(), cuts.subscribe()));
            }
        });
        Proxy {
            port,
            state,
            generation,
            task,
        }
    }

    /// `redis://127.0.0.1:PORT/` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The next request that contains `needle` (e.g. a script's SHA1) reaches Redis and runs,
    /// but its connection is closed before the reply: the client cannot know it ran.
    pub fn drop_reply_to(&self, needle: &str) {
        *self.state.trigger.lock().unwrap() = Some(needle.as_bytes().to_vec());
    }

    /// Replies lost so far.
    pub fn dropped(&self) -> u32 {
        self.state.dropped.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (including the ones refused while down).
    pub fn accepted(&self) -> u32 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Down: cuts every open connection and closes new ones at once, like a Redis that died.
    /// Up: forwards again.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
        if down {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    state: Arc<State>,
    mut cut: watch::Receiver<u64>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let cut_here = Arc::new(AtomicBool::new(false));
    let replies_cut = cut_here.clone();
    let replies = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if replies_cut.load(Ordering::SeqCst) {
                return;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let requests = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let hit = {
                let mut trigger = state.trigger.lock().unwrap();
                let hit = trigger
                    .as_ref()
                    .is_some_and(|t| buf[..n].windows(t.len()).any(|w| w == &t[..]));
                if hit {
                    *trigger = None;
                }
                hit
            };
            if hit {
                // No reply from here on reaches the client; the request still runs.
                cut_here.store(true, Ordering::SeqCst);
                state.dropped.fetch_add(1, Ordering::SeqCst);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
            if hit {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
        }
    };
    // Whichever side ends first ends the connection: both halves are dropped here.
    tokio::select! {
        () = replies => {}
        () = requests => {}
        _ = cut.changed() => {}
    }
}
