//! PUBLISH from the client: device API topics into the gateway (telemetry
//! acknowledged once durable), broker topics to subscribers, QoS 2 bookkeeping
//! and topic aliases.

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(super) async fn on_publish(&mut self, p: Publish) -> Result<(), ConnError> {
        let topic = self.resolve_topic(&p).await?;
        // QoS 0/1 telemetry of a device is pipelined; anything else is
        // acknowledged at once, so what is pending goes first.
        let pipelined = matches!(self.peer, Peer::Device(..))
            && topic == device::TELEMETRY
            && p.qos != QoS::ExactlyOnce;
        if !pipelined {
            self.drain_pending().await?;
        }
        if p.qos == QoS::ExactlyOnce {
            let max = usize::from(self.state.broker.limits().max_inflight);
            let (seen, full) = self.claim_qos2(p.pkid, max).await;
            if seen {
                // A resend of a QoS 2 publish already handled (and durable):
                // acknowledge again, without handling it twice.
                self.io
                    .queue(codec::pubrec(p.pkid, PubRecReason::Success))?;
                return Ok(());
            }
            if full {
                self.disconnect(
                    DisconnectReasonCode::ReceiveMaximumExceeded,
                    "too many QoS 2 publishes in flight",
                )
                .await;
                return Err(ConnError::Protocol("receive maximum exceeded".into()));
            }
        }
        let outcome = match &self.peer {
            Peer::Device(d, _) => {
                match device::publish(&self.state, d, &self.session, &topic, &p.payload).await {
                    Ok(Handled::Done) => Ok(PubAckReason::Success),
                    Ok(Handled::Telemetry(batch)) if pipelined => {
                        if self.pending.len() >= self.window {
                            let durable = next_durable(&mut self.pending).await;
                            self.acknowledge_all(durable).await?;
                        }
                        let durable = self.state.gateway.submit(batch).await.map_err(|e| {
                            ConnError::Rejected(format!("telemetry not stored: {e}"))
                        })?;
                        self.pending.push_back((p.pkid, p.qos, durable));
                        return Ok(());
                    }
                    // QoS 2: durable before PUBREC, one at a time.
                    Ok(Handled::Telemetry(batch)) => match self.state.gateway.submit(batch).await {
                        Ok(durable) => durable
                            .await
                            .map(|_| PubAckReason::Success)
                            .map_err(|e| device::unavailable(format!("telemetry not stored: {e}"))),
                        Err(e) => Err(e.into()),
                    },
                    Err(r) => Err(r),
                }
            }
            Peer::Client(principal, _) => self.client_publish(principal, topic, &p),
        };
        let (code, text) = match outcome {
            Ok(matched) => {
                if p.qos == QoS::ExactlyOnce {
                    self.session.lock().incoming.insert(p.pkid, true);
                }
                (matched, None)
            }
            Err(refusal) => {
                if p.qos == QoS::ExactlyOnce {
                    self.session.lock().incoming.remove(&p.pkid);
                }
                // MQTT 3.1.1 has no negative acknowledgement, and QoS 0 none at all:
                // closing is the only way to tell the client.
                if !self.v5 || p.qos == QoS::AtMostOnce {
                    let code = match refusal.code {
                        PubAckReason::NotAuthorized => DisconnectReasonCode::NotAuthorized,
                        PubAckReason::TopicNameInvalid => DisconnectReasonCode::TopicNameInvalid,
                        PubAckReason::PayloadFormatInvalid => {
                            DisconnectReasonCode::PayloadFormatInvalid
                        }
                        _ => DisconnectReasonCode::ImplementationSpecificError,
                    };
                    self.disconnect(code, &refusal.detail).await;
                    return Err(ConnError::Rejected(refusal.detail));
                }
                (refusal.code, Some(refusal.detail))
            }
        };
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.io.queue(codec::puback(p.pkid, code, text))?,
            QoS::ExactlyOnce => self.io.queue(codec::pubrec(p.pkid, rec_reason(code)))?,
        }
        Ok(())
    }

    /// Claims a QoS 2 packet id for handling: (already handled, too many in
    /// flight). If another connection of the session is still handling the
    /// same id (a resend after take-over), waits for its outcome, so a resend
    /// is acknowledged only once the first attempt is durable.
    pub(super) async fn claim_qos2(&self, pkid: u16, max: usize) -> (bool, bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let mut st = self.session.lock();
                match st.incoming.get(&pkid).copied() {
                    Some(true) => return (true, false),
                    Some(false) if Instant::now() < deadline => {}
                    _ => {
                        if st.incoming.len() >= max {
                            return (false, true);
                        }
                        st.incoming.insert(pkid, false);
                        return (false, false);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The topic of a publish, through MQTT 5 topic aliases.
    pub(super) async fn resolve_topic(&mut self, p: &Publish) -> Result<String, ConnError> {
        let Ok(named) = std::str::from_utf8(&p.topic) else {
            return Err(ConnError::Protocol("topic is not UTF-8".into()));
        };
        let alias = p.properties.as_ref().and_then(|pr| pr.topic_alias);
        match alias {
            None if !named.is_empty() => Ok(named.to_string()),
            Some(a) if a == 0 || a > TOPIC_ALIAS_MAX => {
                self.disconnect(
                    DisconnectReasonCode::TopicAliasInvalid,
                    "topic alias out of range",
                )
                .await;
                Err(ConnError::Protocol("topic alias out of range".into()))
            }
            Some(a) if !named.is_empty() => {
                self.aliases.insert(a, named.to_string());
                Ok(named.to_string())
            }
            Some(a) => match self.aliases.get(&a) {
                Some(t) => Ok(t.clone()),
                None => {
                    self.disconnect(DisconnectReasonCode::ProtocolError, "unknown topic alias")
                        .await;
                    Err(ConnError::Protocol("unknown topic alias".into()))
                }
            },
            None => {
                self.disconnect(DisconnectReasonCode::TopicNameInvalid, "empty topic")
                    .await;
                Err(ConnError::Protocol("empty topic".into()))
            }
        }
    }

    /// A broker client's publish: routed within its tenant.
    pub(super) fn client_publish(
        &self,
        principal: &Principal,
        topic: String,
        p: &Publish,
    ) -> Result<PubAckReason, Refusal> {
        if principal.require(Action::Write).is_err() {
            return Err(Refusal::new(
                PubAckReason::NotAuthorized,
                "forbidden",
                "this key may only subscribe (read scope)".into(),
            ));
        }
        if !topic::valid_name(&topic) || topic.starts_with('$') {
            return Err(Refusal::new(
                PubAckReason::TopicNameInvalid,
                "topic",
                format!("clients may not publish to {topic:?}"),
            ));
        }
        let mut props = p.properties.clone();
        let mut expires_at = None;
        if let Some(pr) = props.as_mut() {
            pr.topic_alias = None;
            pr.subscription_identifiers.clear();
            expires_at = pr
                .message_expiry_interval
                .map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        }
        let matched = self.state.broker.publish(
            self.session.space,
            Message {
                topic,
                payload: p.payload.clone(),
                qos: p.qos,
                retain: p.retain,
                props,
                expires_at,
                origin: self.session.serial,
            },
        );
        Ok(if matched == 0 {
            PubAckReason::NoMatchingSubscribers
        } else {
            PubAckReason::Success
        })
    }
}

pub(super) fn rec_reason(code: PubAckReason) -> PubRecReason {
    match code {
        PubAckReason::Success => PubRecReason::Success,
        PubAckReason::NoMatchingSubscribers => PubRecReason::NoMatchingSubscribers,
        PubAckReason::NotAuthorized => PubRecReason::NotAuthorized,
        PubAckReason::TopicNameInvalid => PubRecReason::TopicNameInvalid,
        PubAckReason::PayloadFormatInvalid => PubRecReason::PayloadFormatInvalid,
        PubAckReason::QuotaExceeded => PubRecReason::QuotaExceeded,
        _ => PubRecReason::ImplementationSpecificError,
    }
}
