//! A TCP forwarder on loopback that a test can cut: while cut, nothing goes
//! through in either direction and nothing is closed either (the silence of
//! a partition, not a refusal: the peers find out by their own timeouts);
//! when restored, the connections held are closed and new ones go through.
//! It stands
//! between one process and a server (a coordinator and its PostgreSQL) to
//! cut that one process off, as a network partition would, while the
//! others still reach the server.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running forwarder.
#[derive(Debug)]
pub struct CutProxy {
    /// Where to connect instead of the server.
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Forwards a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<CutProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, cut_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    if *cut_rx.borrow() {
                        // Held unanswered until the cut heals, then closed.
                        let _ = cut_rx.wait_for(|c| !*c).await;
                        return;
                    }
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                        _ = cut_rx.wait_for(|c| *c) => {}
                    }
                    let _ = cut_rx.wait_for(|c| !*c).await;
                    drop((inbound, outbound));
                });
            }
        });
        Ok(CutProxy { addr, cut, task })
    }

    /// Stops everything going through, silently.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Heals the cut: the connections held are closed, new ones go through.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
