//! Property tests of protocol V1 as nsqlookupd parses it, through its TCP
//! port in this process: any bytes give answers or a closed connection,
//! never a panic or an allocation sized by a claimed length; valid command
//! sequences are answered and registered as sent.

use bytes::{Bytes, BytesMut};
use nsq_daemon::lookup_protocol::{decode_response, LookupCommand, PeerIdentity, MAGIC_V1};
use nsqlookupd::{Lookupd, Options};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Set by any panic in this process, lookupd's tasks included.
static PANICKED: AtomicBool = AtomicBool::new(false);

fn start_lookupd() -> (tokio::runtime::Runtime, Lookupd) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        default(info);
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lookupd = runtime.block_on(async {
        Lookupd::start(Options {
            tcp_address: "127.0.0.1:0".into(),
            http_address: "127.0.0.1:0".into(),
            broadcast_address: "127.0.0.1".into(),
            ..Options::default()
        })
        .await
        .unwrap()
    });
    (runtime, lookupd)
}

fn identity() -> PeerIdentity {
    PeerIdentity {
        broadcast_address: "127.0.0.1".into(),
        hostname: "prop".into(),
        tcp_port: 4150,
        http_port: 4151,
        version: "1.3.0".into(),
    }
}

/// REGISTER and UNREGISTER of a few names, and PING.
fn registration() -> impl Strategy<Value = LookupCommand> {
    let name = prop_oneof![Just("a"), Just("b"), Just("c#ephemeral")];
    let channel = proptest::option::of(prop_oneof![Just("x"), Just("y")]);
    prop_oneof![
        (name.clone(), channel.clone()).prop_map(|(t, c)| LookupCommand::Register {
            topic: t.into(),
            channel: c.map(Into::into),
        }),
        (name, channel).prop_map(|(t, c)| LookupCommand::Unregister {
            topic: t.into(),
            channel: c.map(Into::into),
        }),
        Just(LookupCommand::Ping),
    ]
}

fn encode(cmds: &[LookupCommand]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for c in cmds {
        c.encode(&mut buf);
    }
    buf.to_vec()
}

/// Bytes derived from a valid session: cut short, with bytes overwritten,
/// and with a 4-byte big-endian size somewhere set huge or negative.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = proptest::collection::vec(registration(), 0..4).prop_map(|mut cmds| {
        cmds.insert(0, LookupCommand::Identify(identity()));
        encode(&cmds)
    });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..100),
        Just(b"IDENTIFY\n\x00\x0f\xff\xff{".to_vec()),
        Just(b"IDENTIFY\n\x7f\xff\xff\xff".to_vec()),
        Just(vec![b'P'; 5000]),
        valid.prop_flat_map(|bytes| {
            let len = bytes.len();
            (
                Just(bytes),
                proptest::option::of(0..=len),
                proptest::collection::vec((0..len, any::<u8>()), 0..4),
                proptest::option::of((0..len, any::<u32>())),
            )
                .prop_map(|(mut bytes, cut, flips, size)| {
                    for (at, b) in flips {
                        bytes[at] = b;
                    }
                    if let Some((at, size)) = size {
                        let at = at.min(bytes.len() - 4);
                        bytes[at..at + 4].copy_from_slice(&size.to_be_bytes());
                    }
                    if let Some(cut) = cut {
                        bytes.truncate(cut);
                    }
                    bytes
                })
        }),
    ]
}

/// Connects, sends the magic and `bytes`; with `close`, also ends the
/// sending side and reads until lookupd closes. Returns the stream (for
/// sessions kept open) and the answers read, each well formed.
async fn session(
    lookupd: &Lookupd,
    bytes: &[u8],
    answers_wanted: Option<usize>,
) -> Result<(TcpStream, Vec<Bytes>), TestCaseError> {
    let mut stream = TcpStream::connect(lookupd.tcp_addr()).await.unwrap();
    stream.write_all(MAGIC_V1).await.unwrap();
    let _ = stream.write_all(bytes).await;
    if answers_wanted.is_none() {
        let _ = stream.shutdown().await;
    }
    let mut buf = BytesMut::new();
    let mut answers = Vec::new();
    while answers_wanted != Some(answers.len()) {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_buf(&mut buf)).await;
        match read {
            Err(_) => return Err(TestCaseError::fail("lookupd neither answered nor closed")),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
        }
        while let Some(answer) = decode_response(&mut buf, 1 << 16)
            .map_err(|size| TestCaseError::fail(format!("answer of {size} bytes")))?
        {
            answers.push(answer);
        }
    }
    Ok((stream, answers))
}

#[test]
fn sessions_of_any_bytes_end_in_answers_or_a_close() {
    let (runtime, lookupd) = start_lookupd();
    let mut runner = TestRunner::new(config(512));
    runner
        .run(&hostile_bytes(), |bytes| {
            let (_, answers) = runtime.block_on(session(&lookupd, &bytes, None))?;
            // Every error closes the connection, so only the last answer may be one.
            for answer in answers.iter().rev().skip(1) {
                prop_assert!(!answer.starts_with(b"E_"), "{:?}", answer);
            }
            prop_assert!(!PANICKED.load(Ordering::SeqCst), "lookupd panicked");
            Ok(())
        })
        .unwrap();
    let ping = encode(&[LookupCommand::Ping]);
    let (_, answers) = runtime.block_on(session(&lookupd, &ping, None)).unwrap();
    assert_eq!(answers, vec![Bytes::from_static(b"OK")]);
    runtime.block_on(lookupd.shutdown());
}

#[test]
fn valid_sessions_register_what_they_say() {
    let (runtime, lookupd) = start_lookupd();
    let http = nsq::LookupdHttp::new(&lookupd.http_addr().to_string());
    let mut runner = TestRunner::new(config(64));
    runner
        .run(&proptest::collection::vec(registration(), 0..8), |cmds| {
            let mut all = vec![LookupCommand::Identify(identity())];
            all.extend(cmds.iter().cloned());
            runtime.block_on(async {
                let (stream, answers) = session(&lookupd, &encode(&all), Some(all.len())).await?;
                prop_assert_eq!(answers.len(), all.len());
                let identify: serde_json::Value = serde_json::from_slice(&answers[0]).unwrap();
                prop_assert_eq!(&identify["version"], "1.3.0");
                prop_assert!(answers[1..].iter().all(|a| &a[..] == b"OK"));
                // The topics this peer should be a producer of, by the commands' rules.
                let mut registered = BTreeSet::new();
                for c in &cmds {
                    match c {
                        LookupCommand::Register { topic, .. } => {
                            registered.insert(topic.clone());
                        }
                        LookupCommand::Unregister {
                            topic,
                            channel: None,
                        } => {
                            registered.remove(topic);
                        }
                        _ => {}
                    }
                }
                for topic in ["a", "b", "c#ephemeral"] {
                    let producers = http
                        .lookup(topic)
                        .await
                        .map(|l| l.producers.len())
                        .unwrap_or(0);
                    prop_assert_eq!(producers > 0, registered.contains(topic), "topic {}", topic);
                }
                // Closing leaves every registration.
                drop(stream);
                for topic in registered {
                    let mut left = false;
                    for _ in 0..250 {
                        let producers = http
                            .lookup(&topic)
                            .await
                            .map(|l| l.producers.len())
                            .unwrap_or(0);
                        if producers == 0 {
                            left = true;
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    prop_assert!(left, "still a producer of {} after closing", topic);
                }
                Ok(())
            })
        })
        .unwrap();
    assert!(!PANICKED.load(Ordering::SeqCst));
    runtime.block_on(lookupd.shutdown());
}
