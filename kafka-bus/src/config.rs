//! Connection settings shared by the relay and the consumers.

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::ClientConfig;

use crate::Error;

/// Settings whose values are secrets: shown as `<redacted>` in `Debug`.
const SECRET_SETTINGS: &[&str] = &[
    "sasl.password",
    "sasl.oauthbearer.client.secret",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
];

/// Where the brokers are, plus any librdkafka setting
/// (<https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md>).
///
/// The relay and the consumers start from their own tuned defaults and apply
/// these settings over them, so any of their choices can be overridden.
///
/// ```
/// use annals_kafka::KafkaConfig;
///
/// let config = KafkaConfig::new("127.0.0.1:9092")?
///     .with("client.id", "orders-service")
///     .with("sasl.password", "hunter2");
/// assert!(!format!("{config:?}").contains("hunter2"));
/// # Ok::<(), annals_kafka::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    brokers: String,
    settings: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// Bootstrap servers as `host:port[,host:port...]`.
    pub fn new(brokers: impl Into<String>) -> Result<Self, Error> {
        let brokers = brokers.into();
        let valid = !brokers.trim().is_empty()
            && brokers.split(',').all(|broker| {
                broker
                    .trim()
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            });
        if !valid {
            return Err(Error::Config(format!(
                "bootstrap servers {brokers:?} must be `host:port` separated by commas"
            )));
        }
        Ok(KafkaConfig {
            brokers,
            settings: BTreeMap::new(),
        })
    }

    /// Sets a librdkafka setting.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.insert(key.into(), value.into());
        self
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The settings given with [`KafkaConfig::with`].
    pub fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }

    /// A client configuration: `defaults` first, then the bootstrap servers
    /// and the settings given here, which win.
    pub fn client_config<'a>(
        &self,
        defaults: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in defaults {
            config.set(key, value);
        }
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.settings {
            config.set(key, value);
        }
        config
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings: BTreeMap<&str, &str> = self
            .settings
            .iter()
            .map(|(key, value)| {
                let shown = if SECRET_SETTINGS.contains(&key.as_str()) {
                    "<redacted>"
                } else {
                    value.as_str()
                };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("settings", &settings)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_are_validated() {
        assert!(KafkaConfig::new("a:1,b:2").is_ok());
        for bad in ["", "nohost", ":9092", "host:port", "host:99999"] {
            assert!(KafkaConfig::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn given_settings_override_defaults() {
        let config = KafkaConfig::new("h:1").unwrap().with("linger.ms", "50");
        let client = config.client_config([("linger.ms", "5"), ("acks", "all")]);
        assert_eq!(client.get("linger.ms"), Some("50"));
        assert_eq!(client.get("acks"), Some("all"));
        assert_eq!(client.get("bootstrap.servers"), Some("h:1"));
    }
}
