//! Logging in: by password, or by a code e-mailed to an active account.

use secrecy::SecretString;

use super::{AccountError, Accounts, Action, ClientInfo, IssuedSession, outcome};
use crate::domain::{
    AuthEventKind, AuthOutcome, CodePurpose, EmailAddress, OnMatch, OneTimeCode, Password,
    PasswordHash, User, UserStatus,
};
use crate::metrics::{self, LoginMethod};

impl Accounts {
    /// `POST /api/auth/login {email, password}`. Every failure is the same
    /// `InvalidCredentials`, after the same Argon2 work, and counts towards the address's
    /// back-off whether or not it has an account. The limits and the back-off are checked
    /// before Argon2 runs. A password whose stored hash was made with other Argon2 parameters
    /// than the configured ones is hashed anew and stored.
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
        let failures = self.check_password_backoff(&email, &client).await?;
        let user = self.stores.users.find_by_email(&email).await?;
        let verified = self
            .hasher
            .verify_and_upgrade(
                Password::normalize(&password),
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await?;
        let kind = AuthEventKind::PasswordLogin;
        match user {
            Some(user) if verified.matched && user.status == UserStatus::Active => {
                let user = match verified.upgraded {
                    Some(upgraded) => self.upgrade_hash(user, upgraded).await,
                    None => user,
                };
                self.start_session(user, client, kind).await
            }
            user => {
                self.record(
                    kind,
                    AuthOutcome::Failure,
                    user.as_ref().map(|u| u.id),
                    &client,
                )
                .await;
                self.count_password_failure(&email, failures, user.as_ref())
                    .await?;
                Err(AccountError::InvalidCredentials)
            }
        }
    }

    /// Stores `upgraded` in place of `user`'s hash, unless the password changed meanwhile. A
    /// failure only costs the upgrade (tried again at the next login), never the login.
    async fn upgrade_hash(&self, user: User, upgraded: PasswordHash) -> User {
        match self
            .stores
            .users
            .upgrade_password_hash(user.id, &user.password_hash, &upgraded, self.clock.now())
            .await
        {
            Ok(true) => {
                tracing::info!(user_id = %user.id, "password re-hashed with the current Argon2 parameters");
                User {
                    password_hash: upgraded,
                    ..user
                }
            }
            Ok(false) => user,
            Err(e) => {
                tracing::warn!(user_id = %user.id, error = %e, "could not store the re-hashed password");
                user
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
        self.send_code(email, CodePurpose::Login, client).await
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
        let guess = self
            .admit_guess(Action::VerifyLogin, &client, &email)
            .await?;
        let kind = AuthEventKind::CodeLogin;
        // The code first: a right one starts the session for the address's active account,
        // read in the session's transaction (one read fewer); a wrong one costs the account's
        // read all the same, for the failure's event, whether there is an account or not.
        match self
            .present_code(&email, CodePurpose::Login, &code, OnMatch::Consume)
            .await
        {
            Ok(()) => {
                self.give_back_guess(&email, &guess).await;
                match self.start_session_for_address(&email, &client, kind).await {
                    Ok(Some(started)) => Ok(started),
                    Ok(None) => self.code_login_failed(&email, &client).await,
                    Err(e) => {
                        // The code is spent but no session started: the same code goes back,
                        // so the retry a 503 asks for works (a new one would wait out the
                        // resend cooldown).
                        self.restore_code(&email, CodePurpose::Login, &code).await;
                        Err(e)
                    }
                }
            }
            Err(AccountError::InvalidCode) => self.code_login_failed(&email, &client).await,
            Err(e) => Err(e),
        }
    }

    /// Records a failed code login (with the address's account, if any) and refuses it.
    async fn code_login_failed(
        &self,
        email: &EmailAddress,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AccountError> {
        let user = self.stores.users.find_by_email(email).await?;
        let user_id = user.as_ref().map(|u| u.id);
        self.record(
            AuthEventKind::CodeLogin,
            AuthOutcome::Failure,
            user_id,
            client,
        )
        .await;
        Err(AccountError::InvalidCode)
    }
}
