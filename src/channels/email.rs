//! Email over SMTP (lettre, rustls with ring): plain-text UTF-8 messages. Officers'
//! alerts go one per recipient so officers never see each other's addresses and one bad
//! address does not stop the rest; broadcast subscribers' mail goes through the outbox
//! like any provider's messages.

use super::{rate, Outgoing, Provider, SendOutcome, Transport};
use crate::config::{SmtpConfig, SmtpSecurity};
use futures_util::future::BoxFuture;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::Arc;
use std::time::Duration;

/// Longest an SMTP exchange may take before it counts as failed (and is retried later).
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why mail could not be sent. The text never carries a recipient address or a message
/// body, so it may be logged as is.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("bad mail configuration: {0}")]
    Config(String),
    #[error("no recipient accepted the message ({0})")]
    Smtp(&'static str),
}

/// Sends plain-text mail through the configured SMTP server. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    transport: Arc<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    rate: Option<u32>,
}

/// A short, address-free name for an SMTP failure (the server's own text may echo the
/// recipient, so it is logged at debug level only).
fn kind(e: &lettre::transport::smtp::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_tls() {
        "tls"
    } else if e.is_permanent() {
        "rejected (permanent)"
    } else if e.is_transient() {
        "rejected (transient)"
    } else if e.is_client() || e.is_response() {
        "protocol"
    } else {
        "connection"
    }
}

impl Mailer {
    /// Builds a mailer from the configuration (no connection is made until a send).
    pub fn new(config: &SmtpConfig) -> Result<Mailer, MailError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|_| MailError::Config("smtp.from is not a valid mailbox".into()))?;
        let tls = |host: &str| {
            TlsParameters::new(host.to_owned())
                .map_err(|e| MailError::Config(format!("TLS setup for smtp.host failed: {e}")))
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(SMTP_TIMEOUT));
        builder = match config.security {
            SmtpSecurity::None => builder.tls(Tls::None),
            // Required, not Opportunistic: a server that cannot upgrade gets nothing.
            SmtpSecurity::Starttls => builder.tls(Tls::Required(tls(&config.host)?)),
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls(&config.host)?)),
        };
        match (&config.username, &config.password) {
            (Some(user), Some(pass)) => {
                builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
            }
            (None, None) => {}
            _ => {
                return Err(MailError::Config(
                    "smtp.username and smtp.password go together".into(),
                ))
            }
        }
        Ok(Mailer {
            transport: Arc::new(builder.build()),
            from,
            rate: None,
        })
    }

    /// The same mailer, sending at most `per_second` messages a second through the
    /// outbox (0: no limit).
    pub fn with_rate_per_second(mut self, per_second: u32) -> Mailer {
        self.rate = rate(per_second);
        self
    }

    /// Sends one email with a file attached (the monthly report's workbook) to each of
    /// `to`; how many the server took, or the failure when it took none.
    pub async fn send_with_file(
        &self,
        to: &[String],
        subject: &str,
        text_body: &str,
        file: (&str, &str, Vec<u8>),
    ) -> Result<usize, MailError> {
        use lettre::message::{Attachment, MultiPart, SinglePart};
        let (name, content_type, bytes) = file;
        let Ok(content_type) = ContentType::parse(content_type) else {
            return Err(MailError::Smtp("content type"));
        };
        self.send_each(to, "report", |mailbox| {
            let body = MultiPart::mixed()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text_body.to_owned()),
                )
                .singlepart(
                    Attachment::new(name.to_owned()).body(bytes.clone(), content_type.clone()),
                );
            Message::builder()
                .from(self.from.clone())
                .to(mailbox)
                .subject(subject)
                .multipart(body)
        })
        .await
    }

    /// Sends the message `build` makes for each address of `to` that parses, one at a
    /// time; how many the server took, or the last failure when it took none.
    async fn send_each(
        &self,
        to: &[String],
        what: &'static str,
        build: impl Fn(Mailbox) -> Result<Message, lettre::error::Error>,
    ) -> Result<usize, MailError> {
        let mut delivered = 0;
        let mut attempted = 0;
        let mut last_failure = "none";
        for address in to {
            let Ok(mailbox) = address.parse::<Mailbox>() else {
                tracing::warn!(what, "skipping an email address that does not parse");
                tracing::debug!(address = %address, "unparsable email address");
                continue;
            };
            let message = match build(mailbox) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(what, error = %e, "cannot build an email");
                    continue;
                }
            };
            attempted += 1;
            match self.transport.send(message).await {
                Ok(_) => delivered += 1,
                Err(e) => {
                    last_failure = kind(&e);
                    tracing::warn!(
                        what,
                        failure = last_failure,
                        "SMTP server did not take an email"
                    );
                    tracing::debug!(address = %address, error = %e, "SMTP failure detail");
                }
            }
        }
        if attempted > 0 && delivered == 0 {
            return Err(MailError::Smtp(last_failure));
        }
        Ok(delivered)
    }

    /// Sends an officers' alert: `text_body` (plain text, UTF-8) under `subject` to each
    /// address in `to`, one message per recipient, at once (not through the outbox).
    /// Returns how many recipients accepted it: `Ok(0)` when no address was valid
    /// (nothing to retry), an error only when every valid recipient failed, so the caller
    /// can try again later.
    pub async fn send_alert(
        &self,
        to: &[String],
        subject: &str,
        text_body: &str,
    ) -> Result<usize, MailError> {
        self.send_each(to, "alert", |mailbox| {
            Message::builder()
                .from(self.from.clone())
                .to(mailbox)
                .subject(subject)
                .header(ContentType::TEXT_PLAIN)
                .body(text_body.to_owned())
        })
        .await
    }

    /// Sends one plain-text message to one address, for the outbox: a campaign broadcast
    /// (with `List-Unsubscribe` and one-click `List-Unsubscribe-Post`, RFC 8058) or a
    /// subscription's confirmation link. A permanent SMTP refusal (5xx) or an address
    /// that does not parse is [`SendOutcome::Rejected`]; anything else retryable.
    async fn send_one(
        &self,
        to: &str,
        subject: &str,
        text_body: &str,
        unsubscribe: Option<&str>,
    ) -> SendOutcome {
        let Ok(mailbox) = to.parse::<Mailbox>() else {
            return SendOutcome::Rejected("email: the address does not parse".into());
        };
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(mailbox)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        if let Some(url) = unsubscribe {
            builder = builder
                .header(ListUnsubscribe(format!("<{url}>")))
                .header(ListUnsubscribePost);
        }
        let message = match builder.body(text_body.to_owned()) {
            Ok(m) => m,
            Err(e) => {
                return SendOutcome::Rejected(format!("email: cannot build the message: {e}"))
            }
        };
        match self.transport.send(message).await {
            Ok(_) => SendOutcome::Accepted { provider_id: None },
            Err(e) if e.is_permanent() => SendOutcome::Rejected(format!("email: {}", kind(&e))),
            Err(e) => SendOutcome::Transient(format!("email: {}", kind(&e))),
        }
    }
}

impl Provider for Mailer {
    fn transport(&self) -> Transport {
        Transport::EMAIL
    }

    fn send<'a>(&'a self, message: &'a Outgoing) -> BoxFuture<'a, SendOutcome> {
        Box::pin(self.send_one(
            &message.to,
            message.subject.as_deref().unwrap_or_default(),
            &message.text,
            message.unsubscribe.as_deref(),
        ))
    }

    fn rate_per_second(&self) -> Option<u32> {
        self.rate
    }
}

/// The `List-Unsubscribe` header (RFC 2369).
#[derive(Clone)]
struct ListUnsubscribe(String);

impl lettre::message::header::Header for ListUnsubscribe {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(s.to_owned()))
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The `List-Unsubscribe-Post` header (RFC 8058): one click unsubscribes.
#[derive(Clone)]
struct ListUnsubscribePost;

impl lettre::message::header::Header for ListUnsubscribePost {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".into())
    }
}
