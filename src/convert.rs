//! Conversions between the domain types and the generated protobuf types (`pb`).

use crate::domain::{HaMode, InvalidValue, MasterRef, MasterView, Member, NodeState};
use crate::pb;

impl From<NodeState> for pb::NodeState {
    fn from(state: NodeState) -> Self {
        match state {
            NodeState::Initializing => pb::NodeState::Initializing,
            NodeState::Standby => pb::NodeState::Standby,
            NodeState::HotStandby => pb::NodeState::HotStandby,
            NodeState::HotBackup => pb::NodeState::HotBackup,
            NodeState::Master => pb::NodeState::Master,
            NodeState::Failed => pb::NodeState::Failed,
            NodeState::Terminated => pb::NodeState::Terminated,
        }
    }
}

/// Reads a wire `NodeState` (an `i32` in prost messages).
pub fn node_state_from_wire(value: i32) -> Result<NodeState, InvalidValue> {
    match pb::NodeState::try_from(value) {
        Ok(pb::NodeState::Initializing) => Ok(NodeState::Initializing),
        Ok(pb::NodeState::Standby) => Ok(NodeState::Standby),
        Ok(pb::NodeState::HotStandby) => Ok(NodeState::HotStandby),
        Ok(pb::NodeState::HotBackup) => Ok(NodeState::HotBackup),
        Ok(pb::NodeState::Master) => Ok(NodeState::Master),
        Ok(pb::NodeState::Failed) => Ok(NodeState::Failed),
        Ok(pb::NodeState::Terminated) => Ok(NodeState::Terminated),
        Ok(pb::NodeState::Unspecified) | Err(_) => Err(InvalidValue::new(
            "state",
            format!("{value} is not a known NodeState"),
        )),
    }
}

impl From<HaMode> for pb::HaMode {
    fn from(mode: HaMode) -> Self {
        match mode {
            HaMode::Disabled => pb::HaMode::Disabled,
            HaMode::Auto => pb::HaMode::Auto,
            HaMode::Master => pb::HaMode::Master,
            HaMode::Standby => pb::HaMode::Standby,
            HaMode::HotStandby => pb::HaMode::HotStandby,
            HaMode::HotBackup => pb::HaMode::HotBackup,
        }
    }
}

/// Reads a wire `HaMode`; `UNSPECIFIED` and unknown numbers are an `InvalidValue` for `mode`.
pub fn ha_mode_from_wire(value: i32) -> Result<HaMode, InvalidValue> {
    match pb::HaMode::try_from(value) {
        Ok(pb::HaMode::Disabled) => Ok(HaMode::Disabled),
        Ok(pb::HaMode::Auto) => Ok(HaMode::Auto),
        Ok(pb::HaMode::Master) => Ok(HaMode::Master),
        Ok(pb::HaMode::Standby) => Ok(HaMode::Standby),
        Ok(pb::HaMode::HotStandby) => Ok(HaMode::HotStandby),
        Ok(pb::HaMode::HotBackup) => Ok(HaMode::HotBackup),
        Ok(pb::HaMode::Unspecified) => Err(InvalidValue::new(
            "mode",
            "HA_MODE_UNSPECIFIED: a mode is required",
        )),
        Err(_) => Err(InvalidValue::new(
            "mode",
            format!("{value} is not a known HaMode"),
        )),
    }
}

impl From<&MasterView> for pb::MasterEvent {
    fn from(view: &MasterView) -> Self {
        let (master_id, master_uri) = MasterRef::to_wire(view.master.as_ref());
        pb::MasterEvent {
            epoch: view.epoch,
            master_id,
            master_uri,
            plane_id: view.plane_id.clone(),
            members: view
                .members
                .iter()
                .map(|member| pb::Member {
                    node_id: member.node_id.clone(),
                    node_uri: member.node_uri.clone(),
                    status: pb::NodeState::from(member.status) as i32,
                    live: member.live,
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::MasterEvent> for MasterView {
    type Error = InvalidValue;
    fn try_from(event: pb::MasterEvent) -> Result<Self, Self::Error> {
        let members = event
            .members
            .into_iter()
            .map(|member| {
                Ok(Member {
                    status: node_state_from_wire(member.status)?,
                    node_id: member.node_id,
                    node_uri: member.node_uri,
                    live: member.live,
                })
            })
            .collect::<Result<_, InvalidValue>>()?;
        Ok(MasterView {
            epoch: event.epoch,
            master: MasterRef::from_wire(event.master_id, event.master_uri),
            plane_id: event.plane_id,
            members,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_and_mode_round_trips() {
        for &state in NodeState::ALL {
            assert_eq!(
                node_state_from_wire(pb::NodeState::from(state) as i32),
                Ok(state)
            );
        }
        for &mode in HaMode::ALL {
            assert_eq!(ha_mode_from_wire(pb::HaMode::from(mode) as i32), Ok(mode));
        }
    }

    #[test]
    fn unspecified_and_unknown_modes_are_invalid() {
        assert_eq!(ha_mode_from_wire(0).unwrap_err().field, "mode");
        assert_eq!(ha_mode_from_wire(99).unwrap_err().field, "mode");
        assert!(node_state_from_wire(0).is_err());
    }
}
