//! Logging in: by password, or by a code e-mailed to an active account.

use secrecy::SecretString;

use super::{AccountError, Accounts, Action, ClientInfo, IssuedSession, outcome};
use crate::domain::{CodePurpose, EmailAddress, OnMatch, OneTimeCode, UserStatus};
use crate::metrics::{self, LoginMethod};

impl Accounts {
    /// `POST /api/auth/login {email, password}`. Every failure is the same
    /// `InvalidCredentials`, after the same Argon2 work, and counts towards the address's
    /// back-off whether or not it has an account. The limits and the back-off are checked
    /// before Argon2 runs.
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
        self.admit(Action::PasswordLogin, &client, Some(&email))
            .await?;
        let failures = self.check_password_backoff(&email).await?;
        let user = self.stores.users.find_by_email(&email).await?;
        let matched = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        match user {
            Some(user) if matched && user.status == UserStatus::Active => {
                self.start_session(user, client).await
            }
            user => {
                self.count_password_failure(&email, failures, user.as_ref())
                    .await?;
                Err(AccountError::InvalidCredentials)
            }
        }
    }

    /// `POST /api/auth/login {email}`: e-mails a login code to an active account; the same
    /// answer for any other address.
    #[tracing::instrument(skip_all)]
    pub async fn request_login_code(
        &self,
        email: EmailAddress,
        client: &ClientInfo,
    ) -> Result<(), AccountError> {
        self.admit(Action::CodeLogin, client, Some(&email)).await?;
        self.send_code(email, CodePurpose::Login).await
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
        self.admit(Action::VerifyLogin, &client, Some(&email))
            .await?;
        let guess = self.take_guess(&email).await?;
        self.present_code(&email, CodePurpose::Login, &code, OnMatch::Consume)
            .await?;
        self.give_back_guess(&email, &guess).await;
        match self.stores.users.find_by_email(&email).await? {
            Some(user) if user.status == UserStatus::Active => {
                self.start_session(user, client).await
            }
            _ => Err(AccountError::InvalidCode),
        }
    }
}
