//! The `--drop-at/--drop-for` fault: a gate every listener and connection watches. When it
//! closes, listeners are dropped (connects are refused) and every open connection ends; when it
//! opens again the listeners are bound anew on the same ports.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateState {
    pub open: bool,
    /// Bumped at every close, so a connection knows it belongs to an earlier epoch.
    pub epoch: u64,
}

pub type GateTx = watch::Sender<GateState>;
pub type GateRx = watch::Receiver<GateState>;

pub fn new_gate() -> (GateTx, GateRx) {
    watch::channel(GateState {
        open: true,
        epoch: 0,
    })
}

/// Resolves once the gate has closed after `epoch` (or the sim is gone).
pub async fn closed_after(mut gate: GateRx, epoch: u64) {
    loop {
        {
            let s = *gate.borrow_and_update();
            if s.epoch != epoch || !s.open {
                return;
            }
        }
        if gate.changed().await.is_err() {
            return;
        }
    }
}

/// When and how often the connection drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropPlan {
    /// First drop, after sim start.
    pub at: Duration,
    /// How long the ports stay closed each time.
    pub for_: Duration,
    /// Start-to-start period of repeated drops (`None`: once).
    pub every: Option<Duration>,
    /// Drops in all when repeating (`None`: until the sim ends).
    pub count: Option<u32>,
}

/// Closes the gate at `plan.at` after sim start and opens it `plan.for_` later, repeating as
/// the plan says.
pub async fn run_drop(gate: GateTx, start: tokio::time::Instant, plan: DropPlan) {
    let mut next = start + plan.at;
    let mut done = 0u32;
    loop {
        tokio::time::sleep_until(next).await;
        gate.send_modify(|s| {
            s.open = false;
            s.epoch += 1;
        });
        tokio::time::sleep(plan.for_).await;
        gate.send_modify(|s| s.open = true);
        done += 1;
        match plan.every {
            Some(every) if plan.count.is_none_or(|n| done < n) => next += every,
            _ => break,
        }
    }
    // a dropped sender would read as "sim gone" to every watcher
    gate.closed().await;
}

/// A listener with SO_REUSEADDR, so the same port can be bound again right after a drop while
/// the dropped connections sit in TIME_WAIT.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

/// Accepts on `listener` while the gate is open and hands each connection to `serve`, which is
/// cancelled (its socket closed) when the gate closes. Rebinds the same address when the gate
/// opens again. Runs until the sim is dropped.
pub async fn accept_loop<F, Fut>(listener: TcpListener, mut gate: GateRx, serve: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let mut listener = Some(listener);
    loop {
        let state = *gate.borrow_and_update();
        match (&listener, state.open) {
            (Some(l), true) => {
                tokio::select! {
                    r = l.accept() => {
                        if let Ok((stream, peer)) = r {
                            let _ = stream.set_nodelay(true);
                            let conn = serve(stream, peer);
                            let closed = closed_after(gate.clone(), state.epoch);
                            tokio::spawn(async move {
                                tokio::select! {
                                    _ = conn => {}
                                    _ = closed => {}
                                }
                            });
                        }
                    }
                    r = gate.changed() => if r.is_err() { return },
                }
            }
            (Some(_), false) => listener = None,
            (None, true) => {
                // The port is ours; a rebind can only fail transiently, so retry briefly.
                for _ in 0..50 {
                    match bind(addr) {
                        Ok(l) => {
                            listener = Some(l);
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                if listener.is_none() {
                    return;
                }
            }
            (None, false) => {
                if gate.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}
