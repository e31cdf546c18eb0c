//! The AWS SDK (`--features aws`): one SDK configuration from the standard chain, and the
//! Secrets Manager reads the stores use. SES lives with the other transports (`email/ses.rs`).

use std::time::Duration;

use anyhow::Context;
use aws_config::meta::region::RegionProviderChain;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use secrecy::SecretString;

use crate::config::Settings;

/// Bound on one attempt of an AWS call, and on the call with the SDK's retries.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The SDK configuration: credentials from the standard chain (the ECS task role; the
/// environment's keys locally), the region from `AWS_REGION`/`AWS_DEFAULT_REGION` or the
/// profile, and the endpoint from the SDK's own `AWS_ENDPOINT_URL` when set (a local stand-in).
pub async fn sdk_config(settings: &Settings) -> SdkConfig {
    let mut region = RegionProviderChain::default_provider();
    // `--aws-region` given as a flag reaches the settings only.
    if let Some(configured) = &settings.aws_region {
        region = region.or_else(Region::new(configured.clone()));
    }
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(CALL_TIMEOUT)
                .build(),
        )
        .load()
        .await
}

/// Reads secrets from AWS Secrets Manager.
#[derive(Clone, Debug)]
pub struct Secrets {
    client: aws_sdk_secretsmanager::Client,
}

impl Secrets {
    /// A client for `config`.
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            client: aws_sdk_secretsmanager::Client::new(config),
        }
    }

    /// The current value (`AWSCURRENT`) of the secret `arn` (an ARN or a name), as text.
    #[tracing::instrument(skip(self))]
    pub async fn read(&self, arn: &str) -> anyhow::Result<SecretString> {
        let answer = self
            .client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            // The SDK's own Display says only "service error"; the context names the cause.
            .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
            .with_context(|| format!("reading the secret {arn} from Secrets Manager"))?;
        let value = answer
            .secret_string
            .with_context(|| format!("the secret {arn} has no text value (a binary secret?)"))?;
        Ok(SecretString::from(value))
    }
}

/// The Redis AUTH token in a secret's value: the text itself, or the `token`, `authToken` or
/// `password` field of a JSON object.
pub fn redis_token(value: &str) -> anyhow::Result<SecretString> {
    let value = value.trim();
    if !value.starts_with('{') {
        return Ok(SecretString::from(value.to_owned()));
    }
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(value)
        .map_err(|_| anyhow::anyhow!("the Redis AUTH secret is neither a token nor JSON"))?;
    ["token", "authToken", "password"]
        .iter()
        .find_map(|field| json.get(*field)?.as_str())
        .map(|token| SecretString::from(token.to_owned()))
        .context("the Redis AUTH secret's JSON has no token, authToken or password field")
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_redis_token_is_plain_text_or_a_json_field() {
        assert_eq!(redis_token(" t0ken\n").unwrap().expose_secret(), "t0ken");
        assert_eq!(
            redis_token(r#"{"password":"p4ss"}"#)
                .unwrap()
                .expose_secret(),
            "p4ss"
        );
        let err = redis_token(r#"{"user":"x"}"#).unwrap_err().to_string();
        assert!(err.contains("no token"), "{err}");
    }
}
