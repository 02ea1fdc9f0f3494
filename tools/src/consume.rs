//! What the consuming tools (`nsq_to_file`, `nsq_to_http`, `nsq_to_nsq`)
//! share: their client configs, connecting a consumer to its sources, and
//! asking lookupd for topics and for the nsqds that have one (which
//! `nsq_stat` and `nsq_tail --peek` use too).

use crate::user_agent;
use nsq::api::PeerInfo;
use nsq::{HttpPool, LookupdHttp};
use std::time::Duration;

/// A consumer's config as upstream's tools build it: the tool's user agent,
/// then `--consumer-opt`s, then `--max-in-flight`, which wins.
pub fn consumer_config(
    program: &str,
    options: &[String],
    max_in_flight: u32,
) -> Result<nsq::Config, String> {
    let mut config = producer_config(program, options)
        .map_err(|e| e.replace("--producer-opt", "--consumer-opt"))?;
    config.max_in_flight = max_in_flight;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// A producer's config: the tool's user agent, then `--producer-opt`s.
pub fn producer_config(program: &str, options: &[String]) -> Result<nsq::Config, String> {
    let mut config = nsq::Config {
        user_agent: user_agent(program),
        ..nsq::Config::default()
    };
    config
        .apply_options(options.iter().map(String::as_str))
        .map_err(|e| format!("failed to parse --producer-opt - {e}"))?;
    Ok(config)
}

/// Connects `consumer` to every nsqd given and every lookupd given.
pub async fn connect(
    consumer: &nsq::Consumer,
    nsqds: &[String],
    lookupds: &[String],
) -> Result<(), nsq::Error> {
    consumer.connect_to_nsqds(nsqds).await?;
    for lookupd in lookupds {
        consumer.connect_to_lookupd(lookupd).await?;
    }
    Ok(())
}

/// The `--http-client-connect-timeout` / `--http-client-request-timeout` client.
pub fn http_client(connect: Duration, request: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(request)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// Every topic the lookupds know, each once. As upstream, lookupds that fail
/// are tolerated while one answers.
pub async fn lookupd_topics(pool: &HttpPool, lookupds: &[String]) -> Result<Vec<String>, String> {
    let mut topics: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    for lookupd in lookupds {
        match LookupdHttp::with_pool(lookupd, pool).topics().await {
            Ok(answer) => {
                for topic in answer {
                    if !topics.contains(&topic) {
                        topics.push(topic);
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !lookupds.is_empty() && errors.len() == lookupds.len() {
        return Err(errors.join("; "));
    }
    topics.sort();
    Ok(topics)
}

/// The HTTP addresses of the nsqds that the lookupds say have `topic`, each
/// once. As upstream, lookupds that fail are tolerated while one answers.
pub async fn lookupd_producers(
    pool: &HttpPool,
    lookupds: &[String],
    topic: &str,
) -> Result<Vec<String>, String> {
    let mut nsqds = Vec::new();
    let mut errors = Vec::new();
    for lookupd in lookupds {
        match LookupdHttp::with_pool(lookupd, pool).lookup(topic).await {
            Ok(answer) => {
                for addr in answer.producers.iter().map(PeerInfo::http_address) {
                    if !nsqds.contains(&addr) {
                        nsqds.push(addr);
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.len() == lookupds.len() {
        return Err(errors.join("; "));
    }
    Ok(nsqds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_in_flight_wins_over_consumer_opt() {
        let options = vec!["max_in_flight,7".to_string(), "max_attempts,9".to_string()];
        let config = consumer_config("nsq_to_x", &options, 200).unwrap();
        assert_eq!((config.max_in_flight, config.max_attempts), (200, 9));
        assert!(config.user_agent.starts_with("nsq_to_x/"));
        let bad = consumer_config("nsq_to_x", &["nope,1".to_string()], 1).unwrap_err();
        assert!(bad.starts_with("failed to parse --consumer-opt"), "{bad}");
    }
}
