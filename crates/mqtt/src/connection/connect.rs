//! CONNECT: who the client is (device token, MQTT username and password,
//! API key or access token), the CONNACK, and the will sent when it goes.

use super::*;

pub(super) async fn authenticate(
    state: &MqttState,
    client_id: &str,
    username: &str,
    password: &str,
) -> Option<Peer> {
    // API keys (and user access tokens) in the password, or an API key as the username.
    let bearer = if password.is_empty() {
        username
    } else {
        password
    };
    if bearer.starts_with(tributary_auth::API_KEY_PREFIX) || bearer.matches('.').count() == 2 {
        if let Ok(p) = state.auth.authenticate(bearer).await {
            return Some(Peer::Client(p, bearer.to_string()));
        }
    }
    if password.is_empty() {
        // ThingsBoard style: the access token is the username.
        return by_token(state, username).await;
    }
    match state
        .auth
        .device_by_mqtt(username, password, client_id)
        .await
    {
        Ok(Some(d)) => {
            // Remember the hash the password matched: a changed password ends the connection.
            let hash = match state.meta.devices_by_mqtt_username(username).await {
                Ok(found) => found.into_iter().find(|(c, _)| c.id == d.id)?.1,
                Err(_) => return None,
            };
            Some(Peer::Device(
                d,
                DeviceCredential::Mqtt(username.to_string(), hash),
            ))
        }
        _ => by_token(state, username).await,
    }
}

pub(super) async fn by_token(state: &MqttState, token: &str) -> Option<Peer> {
    let device = state.auth.device(token).await.ok().flatten()?;
    Some(Peer::Device(
        device,
        DeviceCredential::Token(token.to_string()),
    ))
}

pub(super) fn connack(
    code: ConnectReturnCode,
    present: bool,
    props: Option<ConnAckProperties>,
) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present: present && code == ConnectReturnCode::Success,
        code,
        properties: props,
    })
}

/// Publishes a will, after its delay (MQTT 5) unless the session is resumed first.
pub(super) fn publish_will<S>(state: &MqttState, conn: &Connection<S>, will: LastWill) {
    let Ok(topic) = String::from_utf8(will.topic.to_vec()) else {
        return;
    };
    let allowed = match &conn.peer {
        Peer::Client(p, _) => {
            p.require(Action::Write).is_ok() && topic::valid_name(&topic) && !topic.starts_with('$')
        }
        Peer::Device(..) => false,
    };
    if !allowed {
        return;
    }
    let (mut delay, mut expires_at, mut msg_props) = (Duration::ZERO, None, None);
    if let Some(p) = will.properties {
        delay = Duration::from_secs(u64::from(p.delay_interval.unwrap_or(0)));
        expires_at = p
            .message_expiry_interval
            .map(|s| Instant::now() + delay + Duration::from_secs(u64::from(s)));
        msg_props = Some(PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            ..PublishProperties::default()
        });
    }
    let msg = Message {
        topic,
        payload: will.message,
        qos: will.qos,
        retain: will.retain,
        expires_at,
        props: msg_props,
        origin: conn.session.serial,
    };
    let (broker, space, session) = (
        state.broker.clone(),
        conn.session.space,
        conn.session.clone(),
    );
    // The will is due at the will delay or when the session ends, whichever is first.
    let delay = delay.min(conn.expiry);
    if delay.is_zero() {
        broker.publish(space, msg);
        return;
    }
    let cancelled = session.pending_will();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {
                broker.publish(space, msg);
            }
            // Resumed (or replaced) in time: no will.
            _ = cancelled => {}
        }
    });
}
