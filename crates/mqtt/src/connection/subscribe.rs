//! SUBSCRIBE and UNSUBSCRIBE: filters checked against what the client may
//! read, then registered with the broker.

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(super) fn on_subscribe(&mut self, s: Subscribe) -> Result<(), ConnError> {
        let id = s.properties.as_ref().and_then(|p| p.id);
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        for f in &s.filters {
            let code = self.subscribe_one(f, id, &mut retained);
            codes.push(code);
        }
        self.io.queue(Packet::SubAck(SubAck {
            pkid: s.pkid,
            return_codes: codes,
            properties: None,
        }))?;
        // Retained messages follow the SUBACK, with the retain flag set.
        for (msg, qos, ids) in retained {
            let qos = min_qos(msg.qos, qos);
            self.state.broker.enqueue(
                &self.session,
                Delivery {
                    msg,
                    qos,
                    retain: true,
                    ids,
                    shared: None,
                },
            );
        }
        Ok(())
    }

    pub(super) fn subscribe_one(
        &self,
        f: &Filter,
        id: Option<usize>,
        retained: &mut Vec<(Arc<Message>, QoS, Vec<usize>)>,
    ) -> SubscribeReasonCode {
        if !topic::valid_filter(&f.path) {
            return SubscribeReasonCode::TopicFilterInvalid;
        }
        match &self.peer {
            Peer::Device(..) if !f.path.starts_with(device::PREFIX) => {
                return SubscribeReasonCode::NotAuthorized
            }
            Peer::Device(..) => {}
            Peer::Client(p, _) => {
                if p.require(Action::Read).is_err() {
                    return SubscribeReasonCode::NotAuthorized;
                }
                if crate::shared::parse(&f.path).is_some_and(|p| p.is_err()) {
                    return SubscribeReasonCode::TopicFilterInvalid;
                }
            }
        }
        let opts = SubOptions {
            qos: f.qos,
            no_local: f.nolocal,
            retain_as_published: f.preserve_retain,
            ids: id.into_iter().collect(),
        };
        match self.state.broker.subscribe(
            &self.session,
            &f.path,
            opts,
            f.retain_forward_rule.clone(),
        ) {
            Ok(msgs) => {
                let ids: Vec<usize> = id.into_iter().collect();
                retained.extend(msgs.into_iter().map(|m| (m, f.qos, ids.clone())));
                SubscribeReasonCode::Success(f.qos)
            }
            Err(SubscribeError::Quota) => SubscribeReasonCode::QuotaExceeded,
        }
    }
}
