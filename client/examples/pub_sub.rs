//! Publishes a few messages and consumes them again.
//!
//! Start an nsqd on the default port first, then `cargo run -p nsq --example pub_sub`.

use nsq::{Config, Consumer, Handler, Message, Producer};
use std::time::Duration;
use tokio::sync::mpsc;

/// A handler with state and a failure hook.
struct Printer {
    done: mpsc::UnboundedSender<()>,
}

impl Handler for Printer {
    async fn handle(&self, msg: Message) -> Result<(), nsq::consumer::BoxError> {
        println!("{}: {}", msg.id(), String::from_utf8_lossy(msg.body()));
        let _ = self.done.send(());
        Ok(())
    }

    fn failed(&self, msg: &Message) {
        eprintln!(
            "giving up on {} after {} attempts",
            msg.id(),
            msg.attempts()
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), nsq::Error> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4150".into());

    let producer = Producer::new(addr.clone(), Config::default())?;
    producer
        .multi_publish("example", ["one", "two", "three"])
        .await?;
    producer
        .deferred_publish("example", Duration::from_millis(500), "four")
        .await?;
    producer.stop().await;

    let consumer = Consumer::new(
        "example",
        "printer",
        Config {
            max_in_flight: 10,
            ..Config::default()
        },
    )?;
    let (done, mut handled) = mpsc::unbounded_channel();
    consumer.add_handler(Printer { done })?;
    consumer.connect_to_nsqd(&addr).await?;
    for _ in 0..4 {
        handled.recv().await;
    }
    consumer.stop().await;
    Ok(())
}
