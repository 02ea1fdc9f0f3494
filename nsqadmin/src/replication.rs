//! nsqd's replication as nsqadmin shows it (ours, #18): which links of a
//! node are not in sync, when a replica or a link may be acted on, and the
//! failover actions of the node page. The links and replicas themselves
//! are nsqd's `/stats` types, passed through as nsqd reports them.

use nsq::api::{PeerStats, PromoteAnswer, ReplicaStats, Retired};
use serde::Serialize;

/// A link to a peer that is not in sync, as the nodes list flags it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsynced {
    /// The peer's TCP address, as `--replicate-to` names it.
    pub address: String,
    pub state: String,
}

/// The links that are not `synced`: publishes do not wait for those peers,
/// so a loss of this node now loses what they miss.
pub fn unsynced(peers: &[PeerStats]) -> Vec<Unsynced> {
    peers
        .iter()
        .filter(|p| p.state != "synced")
        .map(|p| Unsynced {
            address: p.address.clone(),
            state: p.state.clone(),
        })
        .collect()
}

/// Whether a replica may be promoted: its origin is away and it is still
/// a replica. nsqd refuses a connected origin anyway (`ORIGIN_CONNECTED`).
pub fn promotable(r: &ReplicaStats) -> bool {
    !r.connected && r.promoted_at.is_none()
}

/// Whether a replica may be forgotten: its origin is away. Promoted, the
/// fence goes and the origin replicates anew when it returns (both copies
/// are then delivered); not promoted, what it kept is dropped.
pub fn forgettable(r: &ReplicaStats) -> bool {
    !r.connected
}

/// Whether a link may be retired: its peer promoted this node's replicas
/// and refuses the link until this node lets go of what it took over.
pub fn retirable(p: &PeerStats) -> bool {
    p.state == "fenced"
}

/// How a replica's origin is named to nsqd: by its data directory's ID,
/// which stays when an address is reused; by address when it has none.
pub fn origin_key(r: &ReplicaStats) -> &str {
    if r.origin_id.is_empty() {
        &r.origin
    } else {
        &r.origin_id
    }
}

/// What the node page's replication buttons ask of one nsqd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationAction {
    /// On a peer: `/replica/promote?origin=`.
    Promote { origin: String },
    /// On a peer: `/replica/forget?origin=`.
    Forget { origin: String },
    /// On an old origin: `/replication/retire?peer=`.
    Retire { peer: String },
}

impl ReplicationAction {
    /// From `POST /api/nodes/:node`'s `{"action", "origin" | "peer"}`; the
    /// error is the API's error code.
    pub fn parse(action: &str, origin: &str, peer: &str) -> Result<Self, &'static str> {
        match action {
            "promote" if origin.is_empty() => Err("MISSING_ARG_ORIGIN"),
            "promote" => Ok(ReplicationAction::Promote {
                origin: origin.to_string(),
            }),
            "forget" if origin.is_empty() => Err("MISSING_ARG_ORIGIN"),
            "forget" => Ok(ReplicationAction::Forget {
                origin: origin.to_string(),
            }),
            "retire" if peer.is_empty() => Err("MISSING_ARG_PEER"),
            "retire" => Ok(ReplicationAction::Retire {
                peer: peer.to_string(),
            }),
            _ => Err("INVALID_ACTION"),
        }
    }

    /// The action's name in `--notification-http-endpoint`'s JSON.
    pub fn notification(&self) -> &'static str {
        match self {
            ReplicationAction::Promote { .. } => "promote_replica",
            ReplicationAction::Forget { .. } => "forget_replica",
            ReplicationAction::Retire { .. } => "retire_replication",
        }
    }
}

/// What nsqd answered a [`ReplicationAction`], as `/api` passes it on:
/// `{"promoted": [...]}`, `{"forgot": "<origin>"}` or `{"retired": {...}}`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ActionDone {
    Promoted(PromoteAnswer),
    Forgot { forgot: String },
    Retired { retired: Retired },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(address: &str, state: &str) -> PeerStats {
        PeerStats {
            address: address.into(),
            state: state.into(),
            ..PeerStats::default()
        }
    }

    #[test]
    fn every_state_but_synced_is_unsynced() {
        let peers = [
            link("a:4150", "synced"),
            link("b:4150", "down"),
            link("c:4150", "catching_up"),
            link("d:4150", "fenced"),
        ];
        let shown: Vec<String> = unsynced(&peers)
            .into_iter()
            .map(|u| format!("{} {}", u.address, u.state))
            .collect();
        assert_eq!(
            shown,
            ["b:4150 down", "c:4150 catching_up", "d:4150 fenced"]
        );
        assert!(unsynced(&peers[..1]).is_empty());
        assert!(retirable(&peers[3]) && !retirable(&peers[1]));
    }

    #[test]
    fn only_an_away_replica_not_yet_promoted_is_promotable() {
        let replica = |connected, promoted_at| ReplicaStats {
            origin: "a:4150".into(),
            connected,
            promoted_at,
            ..ReplicaStats::default()
        };
        assert!(promotable(&replica(false, None)));
        assert!(!promotable(&replica(true, None)));
        assert!(!promotable(&replica(false, Some(1))));
        // Forgotten while away, promoted or not; never while connected.
        assert!(forgettable(&replica(false, None)) && forgettable(&replica(false, Some(1))));
        assert!(!forgettable(&replica(true, None)));
        assert_eq!(origin_key(&replica(false, None)), "a:4150");
        let named = ReplicaStats {
            origin_id: "0123abcd".into(),
            ..replica(false, None)
        };
        assert_eq!(origin_key(&named), "0123abcd");
    }

    #[test]
    fn actions_parse_with_what_they_need() {
        assert_eq!(
            ReplicationAction::parse("promote", "a:4150", ""),
            Ok(ReplicationAction::Promote {
                origin: "a:4150".into()
            })
        );
        assert_eq!(
            ReplicationAction::parse("retire", "", "b:4150"),
            Ok(ReplicationAction::Retire {
                peer: "b:4150".into()
            })
        );
        assert_eq!(
            ReplicationAction::parse("promote", "", "b:4150"),
            Err("MISSING_ARG_ORIGIN")
        );
        assert_eq!(
            ReplicationAction::parse("retire", "a:4150", ""),
            Err("MISSING_ARG_PEER")
        );
        assert_eq!(
            ReplicationAction::parse("forget", "a:4150", ""),
            Ok(ReplicationAction::Forget {
                origin: "a:4150".into()
            })
        );
        assert_eq!(
            ReplicationAction::parse("forget", "", "b:4150"),
            Err("MISSING_ARG_ORIGIN")
        );
        assert_eq!(
            ReplicationAction::parse("jump", "a:4150", ""),
            Err("INVALID_ACTION")
        );
    }
}
