//! Two-way RPC over one KCP+smux session: the NAT'd side dials out, then each side calls the other.

use std::time::Duration;

use rkcp_examples::randsvc::kcp_config;
use rkcp_examples::rpc::{Peer, Routes, RpcError};
use rkcp_session::KcpListener;

const T: Duration = Duration::from_secs(10);

async fn pair(notify: tokio::sync::mpsc::UnboundedSender<Vec<u8>>) -> (Peer, Peer) {
    let listener = KcpListener::bind("127.0.0.1:0", kcp_config())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let nat_routes = Routes::new()
        .route(
            "upper",
            |req: Vec<u8>| async move { req.to_ascii_uppercase() },
        )
        .route("slow", |req: Vec<u8>| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            req
        })
        .route("notify", move |msg: Vec<u8>| {
            let tx = notify.clone();
            async move {
                let _ = tx.send(msg);
                Vec::new()
            }
        });
    let public_routes = Routes::new().route("whoami", |_| async { b"public".to_vec() });
    let (public, nat) = tokio::join!(
        Peer::accept(&listener, rkcp_smux::Config::default(), public_routes),
        Peer::connect(addr, kcp_config(), rkcp_smux::Config::default(), nat_routes),
    );
    (public.unwrap(), nat.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_directions_errors_and_concurrency() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (public, nat) = pair(tx).await;

    // Public side calls into the NAT'd side, and the NAT'd side calls the public side.
    assert_eq!(public.call("upper", b"hello", T).await.unwrap(), b"HELLO");
    assert_eq!(nat.call("whoami", b"", T).await.unwrap(), b"public");

    // One-way send.
    public.send("notify", b"ping").await.unwrap();
    let got = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
    assert_eq!(got, b"ping");

    // Unknown route, both directions.
    match public.call("nope", b"", T).await {
        Err(RpcError::UnknownRoute(r)) => assert_eq!(r, "nope"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        nat.call("upper", b"x", T).await,
        Err(RpcError::UnknownRoute(_))
    ));

    // Timeout.
    match public.call("slow", b"z", Duration::from_millis(300)).await {
        Err(RpcError::Timeout { route, .. }) => assert_eq!(route, "slow"),
        other => panic!("{other:?}"),
    }
    // Bad route names are refused locally.
    assert!(matches!(
        public.call("", b"", T).await,
        Err(RpcError::BadRoute(0))
    ));

    // Concurrent calls in both directions, each on its own stream; a pending slow call blocks nobody.
    let slow = {
        let p = public.clone();
        tokio::spawn(async move { p.call("slow", b"", Duration::from_secs(60)).await })
    };
    let mut tasks = Vec::new();
    for i in 0..100u32 {
        let p = public.clone();
        let n = nat.clone();
        tasks.push(tokio::spawn(async move {
            let msg = format!("msg-{i}");
            let up = p.call("upper", msg.as_bytes(), T).await.unwrap();
            assert_eq!(up, msg.to_uppercase().as_bytes());
            assert_eq!(n.call("whoami", b"", T).await.unwrap(), b"public");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(!slow.is_finished());
    slow.abort();
    public.close().await.unwrap();
}
