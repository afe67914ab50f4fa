//! Rate, size and time limits: a hostile internet cannot exhaust the edge or reach core with it.

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_kick_in_with_retry_after_and_recover() {
    let stack = stack(&[
        ("KIOREX_EDGE__PER_IP_PER_SECOND", "2"),
        ("KIOREX_EDGE__PER_IP_BURST", "4"),
        ("KIOREX_EDGE__PER_CLIENT_PER_SECOND", "1"),
        ("KIOREX_EDGE__PER_CLIENT_BURST", "2"),
        ("KIOREX_EDGE__SERVER_TIMING", "true"),
    ])
    .await;
    let client = https_client(&stack);
    let url = |path: &str| format!("{}{path}", stack.edge.base());
    let lab_a = stack.partner_token("lab-a", "system/Patient.read");
    let lab_b = stack.partner_token("lab-b", "system/Patient.read");
    let code = |body: &Value| body["code"].as_str().unwrap_or_default().to_owned();
    for _ in 0..2 {
        let (status, headers, body) =
            call(client.get(url("/fhir/Patient")).bearer_auth(&lab_a)).await;
        assert!(!code(&body).starts_with("KX-EDGE"), "{status} {body}");
        // With edge.server_timing on, a forwarded answer says how long core took.
        let timing = headers["server-timing"].to_str().unwrap();
        let millis: f64 = timing.strip_prefix("core;dur=").unwrap().parse().unwrap();
        assert!(millis > 0.0, "{timing}");
    }
    let (status, headers, body) = call(client.get(url("/fhir/Patient")).bearer_auth(&lab_a)).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (429, "KX-EDGE-429"),
        "the client's burst is spent"
    );
    assert!(!headers.contains_key("server-timing"), "core was not asked");
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let (_, _, body) = call(client.get(url("/fhir/Patient")).bearer_auth(&lab_b)).await;
    assert!(
        !code(&body).starts_with("KX-EDGE"),
        "another client has its own budget: {body}"
    );

    // Four requests from this address: its burst is spent too, whatever the path.
    let (status, headers, _) = call(client.get(url("/health/live"))).await;
    assert_eq!(status, 429);
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    let (status, _, _) = call(client.get(url("/health/live"))).await;
    assert_eq!(status, 200, "the limit recovers after Retry-After");
}

/// Sends `head` then up to 1 GiB of body in 64 KiB pieces (`chunked` framing or raw), until the
/// edge answers and closes. Returns the edge's status line and the bytes the client got to
/// write.
async fn send_huge_body(stack: &EdgeStack, head: String, chunked: bool) -> (String, u64) {
    let tls = raw_tls(stack).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let piece = vec![b'x'; 64 * 1024];
        let frame = format!("{:x}\r\n", piece.len());
        while counter.load(Ordering::Relaxed) < 1 << 30 {
            if chunked {
                writer.write_all(frame.as_bytes()).await?;
            }
            writer.write_all(&piece).await?;
            if chunked {
                writer.write_all(b"\r\n").await?;
            }
            counter.fetch_add(piece.len() as u64, Ordering::Relaxed);
        }
        Ok::<_, std::io::Error>(())
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the edge kept the connection open");
    let _ = tokio::time::timeout(Duration::from_secs(30), sender).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    (status, written.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gb_body_is_cut_off_early_without_memory_growth() {
    let stack = stack(&[("KIOREX_EDGE__MAX_BODY_BYTES", "1048576")]).await;
    let token = stack.partner_token("lab-a", "system/Patient.write");
    let rss_before = stack.edge.rss_kib();
    let head = |framing: &str| {
        format!(
            "POST /fhir/Patient HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/fhir+json\r\n{framing}\r\n\r\n"
        )
    };
    for (framing, chunked) in [
        ("Content-Length: 1073741824", false),
        ("Transfer-Encoding: chunked", true),
    ] {
        let (status, written) = send_huge_body(&stack, head(framing), chunked).await;
        assert!(status.contains(" 413 "), "{framing}: {status}");
        assert!(
            written < 64 << 20,
            "{framing}: the edge read {written} bytes before cutting off"
        );
    }
    let growth_kib = stack.edge.rss_kib().saturating_sub(rss_before);
    assert!(growth_kib < 32 * 1024, "the edge grew by {growth_kib} KiB");
    let text = metrics(&stack).await;
    assert_eq!(
        metric(
            &text,
            "kiorex_edge_requests_total{outcome=\"rejected\",reason=\"body_too_large\"}"
        ),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed() {
    let stack = stack(&[("KIOREX_EDGE__HEADER_READ_TIMEOUT_SECONDS", "2")]).await;
    // A connection that never starts TLS.
    let started = Instant::now();
    let mut idle = TcpStream::connect(("127.0.0.1", stack.edge.port))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(8), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "still open: {closed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A request head sent one header line every half second, never finished.
    let started = Instant::now();
    let mut slow = raw_tls(&stack).await;
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut closed_after = None;
    for i in 0..40 {
        if slow
            .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
            .await
            .is_err()
        {
            closed_after = Some(started.elapsed());
            break;
        }
        match tokio::time::timeout(Duration::from_millis(500), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) => panic!("the edge answered an unfinished request head"),
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("the slow connection was never closed");
    assert!(
        closed_after < Duration::from_secs(6),
        "closed after {closed_after:?}"
    );

    // Everyone else is still served.
    let (status, _, _) =
        call(https_client(&stack).get(format!("{}/health/live", stack.edge.base()))).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_at_once() {
    let stack = stack(&[("KIOREX_EDGE__MAX_CONNECTIONS", "2")]).await;
    // The start-up readiness probe may still hold a slot for a moment: take both slots as
    // soon as they are free.
    let mut held = Vec::new();
    for _ in 0..100 {
        if held.len() == 2 {
            break;
        }
        match crate::try_raw_tls(&stack).await {
            Ok(connection) => held.push(connection),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(
        held.len(),
        2,
        "the two allowed connections were never both accepted"
    );
    let mut third = TcpStream::connect(("127.0.0.1", stack.edge.port))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the third connection stayed open: {closed:?}"
    );
    drop(held);
    // Once the held connections are gone, new ones are served again.
    let served = kiorex_testkit::wait_until(Duration::from_secs(5), || {
        let stack = &stack;
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                https_client(stack)
                    .get(format!("{}/health/live", stack.edge.base()))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            })
        })
    });
    assert!(
        served,
        "the edge did not serve again after the connections closed"
    );
    let text = metrics(&stack).await;
    assert!(metric(&text, "kiorex_edge_connections_refused_total") >= 1);
}
