//! Webhooks across processes: a coordinator with a simulated worker POSTs
//! a recording's events to a receiver on loopback that verifies every
//! signature and refuses the first two deliveries of the first event. The
//! events arrive in order, a refused one comes again under the same id,
//! `record show` says how each delivery went, SIGTERM stops the sender
//! cleanly, and a webhook URL the URL policy refuses stops the start.

use std::time::{Duration, Instant};

use recfleet_agent::coordinator::webhook::sign;
use recfleet_protocol::{
    now_ms, ConsoleRequest, ConsoleResponse, RecordingId, RecordingSpec, RecordingState,
    WebhookState,
};
use recfleet_testkit::{http_get, FleetOptions, TestFleet};
use recfleet_tests::hooks::{receiver, Received};

const SECRET: &str = "whsec_test_only";
/// Deliveries of the first event refused before one is accepted.
const REFUSALS: u32 = 2;

async fn show_webhooks(
    fleet: &mut TestFleet,
    id: &RecordingId,
) -> Vec<recfleet_protocol::WebhookDelivery> {
    match fleet
        .request(ConsoleRequest::ShowWebhooks { id: id.clone() })
        .await
        .unwrap()
    {
        ConsoleResponse::WebhookDeliveries(d) => d,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_signed_retried_under_one_id_and_shown() {
    let (addr, log) = receiver(SECRET, REFUSALS).await;
    let url = format!("http://{addr}/hooks");
    let mut fleet = TestFleet::start_with(FleetOptions {
        agent_certs: 0,
        coordinator_env: vec![
            ("RECFLEET_WEBHOOK_URLS".into(), url.clone()),
            ("RECFLEET_WEBHOOK_SECRET".into(), SECRET.into()),
            // Retries after 100 ms, 200 ms: the test takes seconds.
            ("RECFLEET_WEBHOOK_BACKOFF_BASE_MS".into(), "100".into()),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    fleet.wait_ready().await.unwrap();
    fleet.add_sim_workers("sim", 1, 2).await.unwrap();
    fleet.wait_workers(1, 30).await.unwrap();

    let id = RecordingId::new("hooked-1").unwrap();
    let spec = RecordingSpec::new(id.clone(), "https://class.example/room");
    let started = fleet
        .request(ConsoleRequest::StartRecording(spec))
        .await
        .unwrap();
    assert!(
        matches!(started, ConsoleResponse::Started { .. }),
        "{started:?}"
    );
    fleet
        .wait_for(&id, 30, |d| d.info.state == RecordingState::Recording)
        .await
        .unwrap();
    let stopped = fleet
        .request(ConsoleRequest::StopRecording { id: id.clone() })
        .await
        .unwrap();
    assert!(
        matches!(stopped, ConsoleResponse::Accepted { .. }),
        "{stopped:?}"
    );
    fleet
        .wait_for(&id, 30, |d| d.info.state == RecordingState::Completed)
        .await
        .unwrap();

    // Both events delivered (the first after two refusals).
    let until = Instant::now() + Duration::from_secs(30);
    let accepted = loop {
        let accepted: Vec<Received> = log
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|r| r.status == 200)
            .cloned()
            .collect();
        if accepted.len() >= 2 {
            break accepted;
        }
        assert!(
            Instant::now() < until,
            "not delivered within 30 s: {:?}; logs in {}",
            log.lock().unwrap().received,
            fleet.dir().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let received = log.lock().unwrap().received.clone();
    // First sent in the order they happened; a retried event may be
    // accepted after a later one (receivers order by `at`, see
    // docs/operations.md).
    let mut first_seen: Vec<&str> = Vec::new();
    for r in &received {
        if !first_seen.contains(&r.event_type.as_str()) {
            first_seen.push(&r.event_type);
        }
    }
    assert_eq!(first_seen, vec!["recording.started", "recording.completed"]);
    let mut accepted = accepted;
    // `at`, then the event number that ends the id (the same millisecond).
    accepted.sort_by_key(|r| {
        let at = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["at"]
            .as_u64()
            .unwrap();
        let seq: u64 = r.event_id.rsplit('-').next().unwrap().parse().unwrap();
        (at, seq)
    });
    let types: Vec<&str> = accepted.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(types, vec!["recording.started", "recording.completed"]);
    assert!(received.iter().all(|r| r.verified), "{received:?}");

    // The first event: two refusals, then the same id and body again.
    let first = &received[0];
    assert_eq!(first.event_type, "recording.started");
    let same: Vec<&Received> = received
        .iter()
        .filter(|r| r.event_id == first.event_id)
        .collect();
    assert_eq!(
        same.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 500, 200]
    );
    assert!(same.iter().all(|r| r.body == first.body));
    assert_ne!(accepted[0].event_id, accepted[1].event_id);

    // The bodies: type and recording; completed says where the output is.
    let body: serde_json::Value = serde_json::from_slice(&accepted[1].body).unwrap();
    assert_eq!(body["type"], "recording.completed");
    assert_eq!(body["recording"], "hooked-1");
    assert_eq!(body["id"], accepted[1].event_id.as_str());
    assert!(body["output"]["manifest"].is_string(), "{body}");

    // Another secret does not verify them; a changed body does not either.
    let c = &accepted[1];
    let now = now_ms() / 1000;
    assert!(sign::verify(b"wrong secret", &c.signature, &c.body, now, 300).is_err());
    assert!(sign::verify(SECRET.as_bytes(), &c.signature, b"{}", now, 300).is_err());

    // `record show`'s part: per event and URL, how it went.
    let until = Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let shown = show_webhooks(&mut fleet, &id).await;
        if shown.len() == 2 && shown.iter().all(|d| d.state == WebhookState::Delivered) {
            break shown;
        }
        assert!(Instant::now() < until, "{shown:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(shown[0].event_type, "recording.started");
    assert_eq!(shown[0].attempts, REFUSALS + 1);
    assert_eq!(shown[0].url, url);
    assert!(shown[0].delivered_at.is_some());
    assert_eq!(shown[1].event_type, "recording.completed");
    assert_eq!(shown[1].attempts, 1);

    // The metrics count every attempt.
    let (status, text) = http_get(fleet.coordinator_http, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains("recfleet_webhook_deliveries_total{result=\"retry\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("recfleet_webhook_deliveries_total{result=\"delivered\"} 2"),
        "{text}"
    );

    // SIGTERM: the sender stops with the rest.
    let status = fleet.stop_coordinator(15).await.unwrap();
    assert!(status.success(), "{status:?}");

    // A webhook URL the URL policy refuses is bad configuration (64).
    let out = fleet
        .coordinator_command(
            recfleet_testkit::fleet::free_udp().unwrap(),
            recfleet_testkit::fleet::free_tcp().unwrap(),
        )
        .env(
            "RECFLEET_WEBHOOK_URLS",
            "http://169.254.169.254/latest/meta-data",
        )
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("webhook URL"), "{stderr}");
    assert!(
        !stderr.contains(SECRET),
        "the secret is never printed: {stderr}"
    );
    fleet.shutdown().await;
}
