//! Logging in: by password, or by a code e-mailed to an active account.

use secrecy::SecretString;

use super::{AccountError, Accounts, ClientInfo, IssuedSession, outcome};
use crate::domain::{CodePurpose, EmailAddress, OnMatch, OneTimeCode, UserStatus};
use crate::metrics::{self, LoginMethod};

impl Accounts {
    /// `POST /api/auth/login {email, password}`. Every failure is the same
    /// `InvalidCredentials`, after the same Argon2 work.
    #[tracing::instrument(skip_all)]
    pub async fn login_with_password(
        &self,
        email: EmailAddress,
        password: SecretString,
        client: ClientInfo,
    ) -> Result<IssuedSession, AccountError> {
        let result = self.check_password(email, password, client).await;
        metrics::login(LoginMethod::Password, outcome(&result));
        result
    }

    async fn check_password(
        &self,
        email: EmailAddress,
        password: SecretString,
        client: ClientInfo,
    ) -> Result<IssuedSession, AccountError> {
        let user = self.stores.users.find_by_email(&email).await?;
        let matched = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        match user {
            Some(user) if matched && user.status == UserStatus::Active => {
                self.start_session(user, client).await
            }
            _ => Err(AccountError::InvalidCredentials),
        }
    }

    /// `POST /api/auth/login {email}`: e-mails a login code to an active account; the same
    /// answer for any other address.
    #[tracing::instrument(skip_all)]
    pub async fn request_login_code(&self, email: EmailAddress) -> Result<(), AccountError> {
        self.resend_code(email, CodePurpose::Login).await
    }

    /// `POST /api/auth/verify-login`: consumes the login code and starts a session.
    #[tracing::instrument(skip_all)]
    pub async fn verify_login(
        &self,
        email: EmailAddress,
        code: OneTimeCode,
        client: ClientInfo,
    ) -> Result<IssuedSession, AccountError> {
        let result = self.check_login_code(email, code, client).await;
        metrics::login(LoginMethod::Code, outcome(&result));
        result
    }

    async fn check_login_code(
        &self,
        email: EmailAddress,
        code: OneTimeCode,
        client: ClientInfo,
    ) -> Result<IssuedSession, AccountError> {
        self.present_code(&email, CodePurpose::Login, &code, OnMatch::Consume)
            .await?;
        match self.stores.users.find_by_email(&email).await? {
            Some(user) if user.status == UserStatus::Active => {
                self.start_session(user, client).await
            }
            _ => Err(AccountError::InvalidCode),
        }
    }
}
