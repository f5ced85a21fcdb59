//! [`Client`]: one connection to the coordinator, made when first needed
//! and made again when it is lost; requests with a deadline; typed helpers
//! for the common calls.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quinn::{Connection, Endpoint};
use recfleet_protocol::quic;
use recfleet_protocol::{
    ConsoleRequest, ConsoleResponse, DrainMode, ErrorCode, OpenStream, RecordingDetail,
    RecordingId, RecordingInfo, RecordingSpec, RecordingState, WebhookDelivery, WorkerInfo,
    WorkerName, LIST_MAX,
};

use crate::connect::{self, Connected, CONNECT_TIMEOUT};
use crate::context::Context;
use crate::error::ClientError;
use crate::pages::{self, Page};

/// How long a request may wait for its answer, unless the caller says.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The identity the coordinator sees (answer to `WhoAmI`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `operator` or `viewer` (or `agent`, `coordinator`).
    pub role: String,
    /// The certificate's name.
    pub name: String,
    /// The coordinator's build version.
    pub coordinator_version: String,
}

/// The answer to a start.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    /// The recording (new or existing).
    pub recording: RecordingInfo,
    /// False when the id already existed with the same spec.
    pub created: bool,
}

/// An operator client of one coordinator. Cheap to clone: clones share the
/// endpoint and the connection, so a subscription and the requests of a
/// TUI go over one connection.
///
/// Nothing is connected by [`Client::new`]; the first request (or
/// [`Client::connection`]) connects, and a request after the connection
/// was lost (closed by either side, or dead for the idle timeout) connects
/// again. A failed request is not retried: actions are not all idempotent,
/// so retrying is the caller's decision.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    coordinator: String,
    server_name: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    /// The connection, once made; a closed one is dropped when next looked at.
    live: Arc<Mutex<Option<Connected>>>,
    /// Held while connecting, so that concurrent requests make one connection.
    connecting: Arc<tokio::sync::Mutex<()>>,
    /// Where a standby said the leader is (tried first at the next
    /// connect), or which standby knew none (left out of it).
    redirect: Arc<Mutex<connect::Redirect>>,
}

/// How many times a request goes to another coordinator after a standby
/// said it does not lead (each hop is one standby's answer).
const NOT_LEADER_HOPS: u32 = 3;
/// The pause before asking again when a standby knows no leader yet (a
/// takeover is under way: the lease's TTL, about 3 s).
const NO_LEADER_PAUSE: Duration = Duration::from_millis(500);

impl Client {
    /// A client of `coordinator` (`host:port`, or several separated by
    /// commas: the coordinators of one fleet, of which one leads) whose
    /// certificate must be valid for `server_name`, using `endpoint` (see
    /// [`connect::endpoint`]).
    pub fn new(
        endpoint: Endpoint,
        coordinator: impl Into<String>,
        server_name: impl Into<String>,
    ) -> Client {
        Client {
            endpoint,
            coordinator: coordinator.into(),
            server_name: server_name.into(),
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            live: Arc::new(Mutex::new(None)),
            connecting: Arc::new(tokio::sync::Mutex::new(())),
            redirect: Arc::new(Mutex::new(connect::Redirect::default())),
        }
    }

    /// A client of the context's coordinator with the context's certificate.
    pub fn from_context(ctx: &Context) -> Result<Client, ClientError> {
        let tls = connect::load_tls(ctx)?;
        let endpoint = connect::endpoint(&tls)?;
        Ok(Client::new(endpoint, &ctx.coordinator, &ctx.server_name))
    }

    /// How long a connection attempt may take (default [`CONNECT_TIMEOUT`]).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Client {
        self.connect_timeout = timeout;
        self
    }

    /// How long a request may wait for its answer (default [`REQUEST_TIMEOUT`]).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Client {
        self.request_timeout = timeout;
        self
    }

    /// The coordinator as given.
    pub fn coordinator(&self) -> &str {
        &self.coordinator
    }

    /// The address of the current connection, if one is up.
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        self.current().map(|c| c.addr)
    }

    fn current(&self) -> Option<Connected> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live
            .as_ref()
            .is_some_and(|c| c.connection.close_reason().is_some())
        {
            *live = None;
        }
        live.clone()
    }

    /// How long a request may wait for its answer.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The connection: the current one, or a new one if there is none or
    /// it was lost.
    pub async fn connection(&self) -> Result<Connected, ClientError> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let redirect =
            std::mem::take(&mut *self.redirect.lock().unwrap_or_else(PoisonError::into_inner));
        let c = connect::connect_any(
            &self.endpoint,
            &redirect,
            &connect::addresses(&self.coordinator),
            &self.server_name,
            self.connect_timeout,
        )
        .await?;
        *self.live.lock().unwrap_or_else(PoisonError::into_inner) = Some(c.clone());
        Ok(c)
    }

    /// Forgets the connection to a standby and remembers where it said the
    /// leader is.
    pub(crate) fn redirect(&self, leader: Option<&str>) {
        let left = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(c) = &left {
            c.connection.close(0u32.into(), b"not the leader");
        }
        *self.redirect.lock().unwrap_or_else(PoisonError::into_inner) = connect::Redirect {
            leader: leader.map(str::to_string),
            avoid: left.map(|c| c.addr).filter(|_| leader.is_none()),
        };
    }

    /// Closes the connection cleanly (a later request connects again).
    pub fn close(&self) {
        if let Some(c) = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            c.connection.close(0u32.into(), b"client done");
        }
    }

    /// Sends one request (connecting first if needed) and waits at most the
    /// request deadline for the answer. An error answer is
    /// [`ClientError::Wire`].
    pub async fn request(&self, req: ConsoleRequest) -> Result<ConsoleResponse, ClientError> {
        let mut hops = 0;
        loop {
            let live = self.connection().await?;
            let answer = request_on(&live.connection, req.clone(), self.request_timeout)
                .await
                .map_err(|e| match e {
                    ClientError::NoAnswer { after, .. } => ClientError::NoAnswer {
                        addr: live.addr.to_string(),
                        after,
                    },
                    other => other,
                });
            match answer {
                // A standby did nothing with the request: ask the leader.
                Err(ClientError::Wire(e))
                    if e.code == ErrorCode::NotLeader && hops < NOT_LEADER_HOPS =>
                {
                    hops += 1;
                    let leader = e.leader().map(str::to_string);
                    if leader.is_none() {
                        tokio::time::sleep(NO_LEADER_PAUSE).await;
                    }
                    self.redirect(leader.as_deref());
                }
                // No answer in time from one of several coordinators: it
                // may be gone (a dead peer shows only after the idle
                // timeout). The next request connects afresh, to whichever
                // answers. With one coordinator there is nowhere else to go.
                Err(e @ ClientError::NoAnswer { .. })
                    if connect::addresses(&self.coordinator).len() > 1 =>
                {
                    self.redirect(None);
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    /// `WhoAmI`.
    pub async fn whoami(&self) -> Result<Identity, ClientError> {
        match self.request(ConsoleRequest::WhoAmI).await? {
            ConsoleResponse::Identity {
                role,
                name,
                coordinator_version,
            } => Ok(Identity {
                role,
                name,
                coordinator_version,
            }),
            other => Err(ClientError::unexpected("an identity", &other)),
        }
    }

    /// `ListCoordinators`.
    pub async fn coordinators(
        &self,
    ) -> Result<Vec<recfleet_protocol::CoordinatorInfo>, ClientError> {
        match self.request(ConsoleRequest::ListCoordinators).await? {
            ConsoleResponse::Coordinators(list) => Ok(list),
            other => Err(ClientError::unexpected("a coordinator list", &other)),
        }
    }

    /// `ListWorkers`.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, ClientError> {
        match self.request(ConsoleRequest::ListWorkers).await? {
            ConsoleResponse::Workers(ws) => Ok(ws),
            other => Err(ClientError::unexpected("a worker list", &other)),
        }
    }

    /// One page of recordings in `states` (every state when empty): at most
    /// `limit` (0: the coordinator's default), after the token `after`.
    pub async fn recordings_page(
        &self,
        states: &[RecordingState],
        limit: u32,
        after: Option<String>,
    ) -> Result<Page<RecordingInfo>, ClientError> {
        let req = ConsoleRequest::ListRecordingsPage {
            states: states.to_vec(),
            limit,
            after,
        };
        match self.request(req).await? {
            ConsoleResponse::RecordingsPage { recordings, next } => Ok(Page {
                items: recordings,
                next,
            }),
            other => Err(ClientError::unexpected("a page of recordings", &other)),
        }
    }

    /// Every recording in `states` (every state when empty): page after
    /// page of [`LIST_MAX`] until the last, in the coordinator's order
    /// (oldest first). A page token seen twice is an error.
    pub async fn recordings_all(
        &self,
        states: &[RecordingState],
    ) -> Result<Vec<RecordingInfo>, ClientError> {
        self.recordings_from(states, None).await
    }

    /// Like [`Client::recordings_all`], starting after the token `after`.
    pub async fn recordings_from(
        &self,
        states: &[RecordingState],
        after: Option<String>,
    ) -> Result<Vec<RecordingInfo>, ClientError> {
        let this = self;
        pages::follow(after, move |after| {
            this.recordings_page(states, LIST_MAX, after)
        })
        .await
    }

    /// `ShowRecording`: the recording with its segments and manifest.
    pub async fn show(&self, id: RecordingId) -> Result<RecordingDetail, ClientError> {
        match self.request(ConsoleRequest::ShowRecording { id }).await? {
            ConsoleResponse::Recording(d) => Ok(*d),
            other => Err(ClientError::unexpected("a recording", &other)),
        }
    }

    /// `ShowWebhooks`: the webhook deliveries of a recording's events.
    pub async fn webhooks(&self, id: RecordingId) -> Result<Vec<WebhookDelivery>, ClientError> {
        match self.request(ConsoleRequest::ShowWebhooks { id }).await? {
            ConsoleResponse::WebhookDeliveries(d) => Ok(d),
            other => Err(ClientError::unexpected("WebhookDeliveries", &other)),
        }
    }

    /// `StartRecording` (idempotent by id).
    pub async fn start(&self, spec: RecordingSpec) -> Result<Started, ClientError> {
        match self.request(ConsoleRequest::StartRecording(spec)).await? {
            ConsoleResponse::Started { recording, created } => Ok(Started { recording, created }),
            other => Err(ClientError::unexpected("Started", &other)),
        }
    }

    /// `StopRecording`; the coordinator's sentence.
    pub async fn stop(&self, id: RecordingId) -> Result<String, ClientError> {
        self.action(ConsoleRequest::StopRecording { id }).await
    }

    /// `Drain`; the coordinator's sentence (progress arrives as events).
    pub async fn drain(
        &self,
        worker: WorkerName,
        mode: DrainMode,
        deadline_secs: Option<u32>,
        force: bool,
    ) -> Result<String, ClientError> {
        self.action(ConsoleRequest::Drain {
            worker,
            mode,
            deadline_secs,
            force,
        })
        .await
    }

    /// `Undrain`; the coordinator's sentence.
    pub async fn undrain(
        &self,
        worker: WorkerName,
        keep_ineligible: bool,
    ) -> Result<String, ClientError> {
        self.action(ConsoleRequest::Undrain {
            worker,
            keep_ineligible,
        })
        .await
    }

    /// `Reassign` (`to: None` lets the scheduler pick); the coordinator's sentence.
    pub async fn reassign(
        &self,
        id: RecordingId,
        to: Option<WorkerName>,
    ) -> Result<String, ClientError> {
        self.action(ConsoleRequest::Reassign { id, to }).await
    }

    /// A request answered `Accepted`; its message.
    async fn action(&self, req: ConsoleRequest) -> Result<String, ClientError> {
        match self.request(req).await? {
            ConsoleResponse::Accepted { message } => Ok(message),
            other => Err(ClientError::unexpected("Accepted", &other)),
        }
    }
}

/// One request on `conn`, its answer awaited at most `deadline`; an error
/// answer is [`ClientError::Wire`]. For callers that manage their own
/// connection; [`Client::request`] is this on the client's connection.
pub async fn request_on(
    conn: &Connection,
    req: ConsoleRequest,
    deadline: Duration,
) -> Result<ConsoleResponse, ClientError> {
    let open = OpenStream::Request(req);
    let ask = quic::request::<OpenStream, ConsoleResponse>(conn, &open);
    match tokio::time::timeout(deadline, ask).await {
        Err(_) => Err(ClientError::NoAnswer {
            addr: conn.remote_address().to_string(),
            after: deadline,
        }),
        Ok(answer) => match answer? {
            ConsoleResponse::Error(e) => Err(ClientError::Wire(e)),
            other => Ok(other),
        },
    }
}
