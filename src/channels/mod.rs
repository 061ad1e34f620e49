//! Outgoing channels: how tinbao reaches the police (alerts), never the tipster.

pub mod email;
