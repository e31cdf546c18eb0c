//! Registration and address verification.
//!
//! Write order keeps every failure harmless: the code is stored before the user row, and mail
//! goes out only after both. A failure after the code is stored leaves an orphan code nobody
//! was sent (it expires by itself), never a user without a way to verify.

use secrecy::SecretString;

use super::{AccountError, Accounts, ClientInfo, IssuedSession};
use crate::domain::{
    CodePurpose, EmailAddress, FullName, OneTimeCode, Password, User, UserId, UserStatus,
};
use crate::email::{Email, Message};
use crate::store::Inserted;

/// A registration request, parsed.
#[derive(Debug)]
pub struct Registration {
    /// The address to prove.
    pub email: EmailAddress,
    /// The chosen password.
    pub password: Password,
    /// Display name.
    pub full_name: FullName,
}

impl Accounts {
    /// `POST /api/auth/register`. Answers the same whether or not the address has an account:
    /// a new address gets a pending account and a code; a pending one takes the new password and
    /// name and gets a fresh code (so a squatter who registered someone else's address gains
    /// nothing); an active or disabled one gets a notice instead of a code.
    #[tracing::instrument(skip_all)]
    pub async fn register(&self, request: Registration) -> Result<(), AccountError> {
        let email = request.email.clone();
        self.claim_cooldown(&email, CodePurpose::Registration)
            .await?;
        let result = self.register_claimed(request).await;
        if result.is_err() {
            self.release_cooldown(&email, CodePurpose::Registration)
                .await;
        }
        result
    }

    async fn register_claimed(&self, request: Registration) -> Result<(), AccountError> {
        let Registration {
            email,
            password,
            full_name,
        } = request;
        // Hash first, whatever the account's state, so every branch costs one Argon2 run.
        let password_hash = self.hasher.hash(password).await?;
        let mail = match self.stores.users.find_by_email(&email).await? {
            None => {
                let mail = self
                    .store_new_code(&email, CodePurpose::Registration)
                    .await?;
                let now = self.clock.now();
                let user = User {
                    id: UserId::new(),
                    email: email.clone(),
                    full_name: full_name.clone(),
                    password_hash: password_hash.clone(),
                    status: UserStatus::Pending,
                    created_at: now,
                    updated_at: now,
                    verified_at: None,
                };
                match self.stores.users.insert(&user).await? {
                    Inserted::Created => {
                        tracing::info!(user_id = %user.id.0, "pending account created");
                        mail
                    }
                    // A concurrent registration of the same address won the insert; take the
                    // path an existing account takes.
                    Inserted::EmailTaken => {
                        self.register_existing(&email, &full_name, &password_hash)
                            .await?
                    }
                }
            }
            Some(existing) => {
                self.register_existing_user(existing, &full_name, &password_hash)
                    .await?
            }
        };
        self.mailer.send(&mail).await?;
        Ok(())
    }

    async fn register_existing(
        &self,
        email: &EmailAddress,
        full_name: &FullName,
        password_hash: &crate::domain::PasswordHash,
    ) -> Result<Email, AccountError> {
        let existing = self
            .stores
            .users
            .find_by_email(email)
            .await?
            .ok_or_else(|| {
                AccountError::Unexpected(anyhow::anyhow!("address taken but no account found"))
            })?;
        self.register_existing_user(existing, full_name, password_hash)
            .await
    }

    async fn register_existing_user(
        &self,
        existing: User,
        full_name: &FullName,
        password_hash: &crate::domain::PasswordHash,
    ) -> Result<Email, AccountError> {
        if existing.status == UserStatus::Pending {
            let mail = self
                .store_new_code(&existing.email, CodePurpose::Registration)
                .await?;
            let now = self.clock.now();
            if self
                .stores
                .users
                .update_pending(existing.id, full_name, password_hash, now)
                .await?
            {
                tracing::info!(user_id = %existing.id.0, "pending account re-registered");
                return Ok(mail);
            }
            // Verified in the meantime: fall through to the notice.
        }
        tracing::info!(user_id = %existing.id.0, "registration for an existing account");
        Ok(Email {
            to: existing.email,
            message: Message::AccountAlreadyExists,
        })
    }

    /// `POST /api/auth/verify-registration`: consumes the code, activates the account and
    /// starts a session.
    ///
    /// With `password`, it confirms only the registration made with that password: if someone
    /// else registered the still-pending address again in the meantime (replacing the password,
    /// and mailing the owner a newer code), the owner's verification fails instead of
    /// activating the other person's password. Without it, the most recent registration is
    /// the one confirmed (the original API's body).
    #[tracing::instrument(skip_all, fields(with_password = password.is_some()))]
    pub async fn verify_registration(
        &self,
        email: EmailAddress,
        code: OneTimeCode,
        password: Option<SecretString>,
        client: ClientInfo,
    ) -> Result<IssuedSession, AccountError> {
        let user = self.stores.users.find_by_email(&email).await?;
        if let Some(password) = password {
            // Checked before the code is spent, so a typo does not cost the code.
            let hash = user.as_ref().map(|u| u.password_hash.clone());
            if !self.hasher.verify(password, hash).await? {
                return Err(AccountError::InvalidCode);
            }
        }
        self.consume_code(&email, CodePurpose::Registration, &code)
            .await?;
        let user = user
            .filter(|u| u.status == UserStatus::Pending)
            .ok_or(AccountError::InvalidCode)?;
        let now = self.clock.now();
        // Only the registration looked at above: not one that replaced it since.
        if !self
            .stores
            .users
            .activate(user.id, &user.password_hash, now)
            .await?
        {
            return Err(AccountError::InvalidCode);
        }
        tracing::info!(user_id = %user.id.0, "account verified");
        let user = User {
            status: UserStatus::Active,
            verified_at: Some(now),
            updated_at: now,
            ..user
        };
        self.start_session(user, client).await
    }
}
