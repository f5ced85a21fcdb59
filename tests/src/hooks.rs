//! A receiver of the coordinator's webhooks on loopback, for tests: it
//! verifies signatures and can refuse deliveries to exercise retries.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use recfleet_agent::coordinator::webhook::sign;
use recfleet_protocol::now_ms;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub event_id: String,
    pub event_type: String,
    pub signature: String,
    pub body: Vec<u8>,
    pub verified: bool,
    pub status: u16,
}

#[derive(Debug, Default)]
pub struct Log {
    pub received: Vec<Received>,
    pub first_event: Option<String>,
    pub refused: u32,
}

/// A webhook receiver on 127.0.0.1 that verifies every signature with
/// `secret` (a request that fails is answered 400) and refuses (500) the
/// first `refusals` deliveries of the first event it sees.
pub async fn receiver(secret: &'static str, refusals: u32) -> (SocketAddr, Arc<Mutex<Log>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Log::default()));
    let shared = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let log = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_string()
                            };
                            let signature = header(sign::SIGNATURE_HEADER);
                            let event_id = header(sign::EVENT_ID_HEADER);
                            let event_type = header(sign::EVENT_TYPE_HEADER);
                            let json = header("content-type") == "application/json";
                            let body = req.into_body().collect().await?.to_bytes().to_vec();
                            let verified = json
                                && sign::verify(
                                    secret.as_bytes(),
                                    &signature,
                                    &body,
                                    now_ms() / 1000,
                                    300,
                                )
                                .is_ok();
                            let mut log = log.lock().unwrap();
                            let first = log.first_event.get_or_insert(event_id.clone()).clone();
                            let status = if !verified {
                                400
                            } else if first == event_id && log.refused < refusals {
                                log.refused += 1;
                                500
                            } else {
                                200
                            };
                            log.received.push(Received {
                                event_id,
                                event_type,
                                signature,
                                body,
                                verified,
                                status,
                            });
                            anyhow::Ok(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"")))?,
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, log)
}
