//! TCP protocol V2: one definition of every byte that crosses an nsqd connection.

pub mod command;
pub mod compress;
pub mod frame;
pub mod identify;
pub mod message;
pub mod names;
pub mod repl;

pub use command::{split_params, Command};
pub use frame::{decode_frame, encode_frame, Frame, FrameError, FrameType};
pub use identify::{IdentifyRequest, IdentifyResponse};
pub use message::{MessageId, WireMessage, MESSAGE_HEADER_LEN};
pub use names::{is_ephemeral, is_valid_channel_name, is_valid_topic_name, MAX_NAME_LENGTH};

/// The four bytes a client sends first to speak protocol V2 to nsqd.
pub const MAGIC_V2: &[u8; 4] = b"  V2";

/// The response body that acknowledges a command.
pub const OK: &[u8] = b"OK";

/// The response body nsqd sends periodically; clients answer it with `NOP`.
pub const HEARTBEAT: &[u8] = b"_heartbeat_";

/// The response to `CLS`.
pub const CLOSE_WAIT: &[u8] = b"CLOSE_WAIT";
