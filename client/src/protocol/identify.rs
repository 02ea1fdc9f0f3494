//! The IDENTIFY exchange: what a client asks for and what nsqd grants.

use serde::{Deserialize, Serialize};

/// The JSON body of IDENTIFY. Numbers keep upstream's conventions: `0` means
/// "server default" and `-1` means "disabled" where that applies.
///
/// ```
/// use nsq::protocol::{Command, IdentifyRequest};
///
/// let request = IdentifyRequest {
///     client_id: "worker-1".into(),
///     feature_negotiation: true,
///     heartbeat_interval: 30_000,
///     snappy: true,
///     ..IdentifyRequest::default()
/// };
/// let body = serde_json::to_vec(&request).expect("plain struct");
/// let command = Command::Identify(body.into());
/// # let _ = command;
/// // nsqd reads it as Go does: keys in any case, unknown ones ignored.
/// let read = IdentifyRequest::from_json(br#"{"Client_ID": "w", "extra": 1}"#)?;
/// assert_eq!(read.client_id, "w");
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentifyRequest {
    pub client_id: String,
    pub hostname: String,
    pub user_agent: String,
    pub feature_negotiation: bool,
    /// Milliseconds between heartbeats.
    pub heartbeat_interval: i64,
    pub output_buffer_size: i64,
    /// Milliseconds.
    pub output_buffer_timeout: i64,
    pub tls_v1: bool,
    pub snappy: bool,
    pub deflate: bool,
    pub deflate_level: i64,
    pub sample_rate: i64,
    /// Milliseconds.
    pub msg_timeout: i64,
}

/// nsqd's answer to an IDENTIFY with `feature_negotiation`, in upstream's field order.
///
/// ```
/// let answer: nsq::protocol::IdentifyResponse =
///     serde_json::from_str(r#"{"max_rdy_count":2500,"version":"1.3.0","snappy":true}"#)?;
/// assert!(answer.snappy && !answer.auth_required);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentifyResponse {
    pub max_rdy_count: i64,
    pub version: String,
    /// Milliseconds.
    pub max_msg_timeout: i64,
    /// Milliseconds; the timeout in effect for this connection.
    pub msg_timeout: i64,
    pub tls_v1: bool,
    pub deflate: bool,
    pub deflate_level: i64,
    pub max_deflate_level: i64,
    pub snappy: bool,
    pub sample_rate: i64,
    pub auth_required: bool,
    pub output_buffer_size: i64,
    /// Milliseconds.
    pub output_buffer_timeout: i64,
}

impl IdentifyRequest {
    /// Reads an IDENTIFY body the way Go's `encoding/json` fills upstream's
    /// struct: keys match case-insensitively, `null` keeps the zero value,
    /// unknown keys are ignored, and a value of the wrong type is an error.
    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let serde_json::Value::Object(fields) = value else {
            return Err("IDENTIFY body is not a JSON object".into());
        };
        let mut req = IdentifyRequest::default();
        for (key, value) in &fields {
            if value.is_null() {
                continue;
            }
            let text = |slot: &mut String| match value.as_str() {
                Some(s) => {
                    *slot = s.to_string();
                    Ok(())
                }
                None => Err(format!("{key} must be a string")),
            };
            let int = |slot: &mut i64| match value.as_i64() {
                Some(n) => {
                    *slot = n;
                    Ok(())
                }
                None => Err(format!("{key} must be an integer")),
            };
            let flag = |slot: &mut bool| match value.as_bool() {
                Some(b) => {
                    *slot = b;
                    Ok(())
                }
                None => Err(format!("{key} must be a boolean")),
            };
            match key.to_ascii_lowercase().as_str() {
                "client_id" => text(&mut req.client_id)?,
                "hostname" => text(&mut req.hostname)?,
                "user_agent" => text(&mut req.user_agent)?,
                "feature_negotiation" => flag(&mut req.feature_negotiation)?,
                "heartbeat_interval" => int(&mut req.heartbeat_interval)?,
                "output_buffer_size" => int(&mut req.output_buffer_size)?,
                "output_buffer_timeout" => int(&mut req.output_buffer_timeout)?,
                "tls_v1" => flag(&mut req.tls_v1)?,
                "snappy" => flag(&mut req.snappy)?,
                "deflate" => flag(&mut req.deflate)?,
                "deflate_level" => int(&mut req.deflate_level)?,
                "sample_rate" => {
                    int(&mut req.sample_rate)?;
                    if i32::try_from(req.sample_rate).is_err() {
                        return Err("sample_rate out of range".into());
                    }
                }
                "msg_timeout" => int(&mut req.msg_timeout)?,
                _ => {}
            }
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_real_clients_send() {
        // tokio-nsq 0.14 sends nulls; pynsq sends extra keys.
        let tokio_nsq = br#"{"client_id":null,"hostname":"h","user_agent":"tokio_nsq/0.14.0","feature_negotiation":true,"tls_v1":false,"deflate":false,"snappy":false,"sample_rate":null}"#;
        let req = IdentifyRequest::from_json(tokio_nsq).unwrap();
        assert_eq!(
            (
                req.client_id.as_str(),
                req.hostname.as_str(),
                req.feature_negotiation
            ),
            ("", "h", true)
        );
        let pynsq = br#"{"short_id": "vm", "long_id": "vm", "Client_ID": "vm", "heartbeat_interval": 30000}"#;
        let req = IdentifyRequest::from_json(pynsq).unwrap();
        assert_eq!(
            (req.client_id.as_str(), req.heartbeat_interval),
            ("vm", 30000)
        );
    }

    #[test]
    fn wrong_types_are_errors() {
        assert!(IdentifyRequest::from_json(br#"{"heartbeat_interval":"5"}"#).is_err());
        assert!(IdentifyRequest::from_json(br#"{"msg_timeout":1.5}"#).is_err());
        assert!(IdentifyRequest::from_json(b"[1]").is_err());
        assert!(IdentifyRequest::from_json(b"{").is_err());
    }
}
