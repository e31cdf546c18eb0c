//! Registration and address verification.
//!
//! Write order keeps every failure harmless: the code is stored first, then the user row and
//! the mail's outbox row commit together (the outbox's sender delivers it; nothing is sent from
//! the request). A failure after the code is stored leaves an orphan code nobody was sent (it
//! expires by itself), never a user without a way to verify.

use secrecy::SecretString;

use super::{AccountError, Accounts, Action, ClientInfo, IssuedSession};
use crate::domain::{
    AuthEventKind, AuthOutcome, CodePurpose, EmailAddress, FullName, Locale, OnMatch, OneTimeCode,
    Password, PasswordHash, PendingRegistration, User, UserId, UserStatus,
};
use crate::email::{Email, Message};
use crate::metrics::{self, CodeEvent};
use crate::store::{HitId, Inserted};

/// How long an "already registered" notice stays worth sending while the transport is down.
const NOTICE_MAX_AGE: time::Duration = time::Duration::days(1);

/// A registration request, parsed.
#[derive(Debug)]
pub struct Registration {
    /// The address to prove.
    pub email: EmailAddress,
    /// The chosen password.
    pub password: Password,
    /// Display name.
    pub full_name: FullName,
    /// The language the client asked for (`Accept-Language`); the default when None.
    pub locale: Option<Locale>,
}

impl Accounts {
    /// `POST /api/auth/register`. Answers the same whether or not the address has an account:
    /// a new address gets a pending account and a code; a pending one records one more
    /// registration (its password and name) and gets a fresh code; an active or disabled one
    /// gets a notice instead of a code.
    #[tracing::instrument(skip_all)]
    pub async fn register(
        &self,
        request: Registration,
        client: ClientInfo,
    ) -> Result<(), AccountError> {
        let email = request.email.clone();
        self.admit(Action::Register, &client, Some(&email)).await?;
        let user_id = self
            .with_cooldown(
                &email,
                CodePurpose::Registration,
                &client,
                self.register_claimed(request),
            )
            .await?;
        self.record(
            AuthEventKind::Registration,
            AuthOutcome::Success,
            Some(user_id),
            &client,
        )
        .await;
        Ok(())
    }

    /// Registers under the claimed cooldown; returns the id of the account the address has.
    async fn register_claimed(&self, request: Registration) -> Result<UserId, AccountError> {
        let Registration {
            email,
            password,
            full_name,
            locale,
        } = request;
        let locale = locale.unwrap_or(self.policy.default_locale);
        // Every branch costs exactly one Argon2 run.
        let user_id = match self.stores.users.find_by_email(&email).await? {
            Some(existing) if existing.status == UserStatus::Pending => {
                // The account's salt: the same password then gives the same hash.
                let password_hash = self
                    .hasher
                    .hash_like(password, &existing.password_hash)
                    .await?;
                let id = existing.id;
                self.register_existing_user(existing, full_name, password_hash, locale)
                    .await?;
                id
            }
            // A new address and an account past registration take the same path: the insert
            // a new account makes, which an existing account's own row refuses (and its owner
            // then gets the notice), so the two answers cost the same.
            found => {
                let password_hash = self.hasher.hash(password).await?;
                self.register_new(&email, found, full_name, password_hash, locale)
                    .await?
            }
        };
        self.outbox.wake();
        Ok(user_id)
    }

    /// Registers `email` as a new pending account, unless the address has an account (`found`,
    /// if it was read already): that one then takes the path of an existing account.
    async fn register_new(
        &self,
        email: &EmailAddress,
        found: Option<User>,
        full_name: FullName,
        password_hash: PasswordHash,
        locale: Locale,
    ) -> Result<UserId, AccountError> {
        // Counted as issued only once it is certain to be mailed (the row is new).
        let mail = self
            .put_code(email, Some(&full_name), CodePurpose::Registration, locale)
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
            locale,
        };
        match self.stores.users.insert(&user, &mail).await? {
            Inserted::Created => {
                metrics::code(CodePurpose::Registration, CodeEvent::Issued);
                tracing::info!(user_id = %user.id.0, "pending account created");
                Ok(user.id)
            }
            // The address has an account: one past registration, or a pending one a
            // concurrent registration just made. Take the path an existing account takes
            // (for a pending one, this hash has a salt of its own: it simply counts as a
            // different password).
            Inserted::EmailTaken => {
                // An account past registration stays so: what was read before still holds.
                let existing = match found {
                    Some(existing) => existing,
                    None => self
                        .stores
                        .users
                        .find_by_email(email)
                        .await?
                        .ok_or_else(|| {
                            AccountError::Unexpected(anyhow::anyhow!(
                                "address taken but no account found"
                            ))
                        })?,
                };
                let id = existing.id;
                self.register_existing_user(existing, full_name, password_hash, locale)
                    .await?;
                Ok(id)
            }
        }
    }

    async fn register_existing_user(
        &self,
        existing: User,
        full_name: FullName,
        password_hash: PasswordHash,
        locale: Locale,
    ) -> Result<(), AccountError> {
        if existing.status == UserStatus::Pending {
            // In the language of this registration, which becomes the account's.
            let mail = self
                .store_new_code(
                    &existing.email,
                    &full_name,
                    CodePurpose::Registration,
                    locale,
                )
                .await?;
            let registration = PendingRegistration {
                password_hash,
                full_name,
                created_at: self.clock.now(),
            };
            if self
                .stores
                .users
                .register_again(existing.id, &registration, MAX_PENDING_REGISTRATIONS, &mail)
                .await?
            {
                tracing::info!(user_id = %existing.id.0, "pending account registered again");
                return Ok(());
            }
            // Verified in the meantime: fall through to the notice.
        }
        tracing::info!(user_id = %existing.id.0, "registration for an existing account");
        // The owner's name and language, not the ones just sent: the notice goes to the owner.
        let notice = Email {
            to: existing.email,
            name: Some(existing.full_name),
            locale: existing.locale,
            message: Message::AccountAlreadyExists,
        };
        // Nothing else is written for an existing account: the outbox row is the write.
        let mail = self.seal(&notice, self.clock.now() + NOTICE_MAX_AGE)?;
        self.stores.outbox.enqueue(&mail).await?;
        Ok(())
    }

    /// `POST /api/auth/verify-registration`: consumes the code, activates the account and
    /// starts a session.
    ///
    /// Registering a still-pending address again never replaces an earlier registration, so
    /// whoever registered the owner's address (before or after them) cannot have the owner's
    /// code confirm their password:
    /// - with `password`, only the registration made with that password is confirmed (a wrong
    ///   one fails before the code is spent);
    /// - without it, the single registration is confirmed when there is only one; when
    ///   different passwords were registered, a request holding the right code is told to
    ///   send the password too ([`AccountError::PasswordRequired`]), and the code stays valid.
    #[tracing::instrument(skip_all, fields(with_password = password.is_some()))]
    pub async fn verify_registration(
        &self,
        email: EmailAddress,
        code: OneTimeCode,
        password: Option<SecretString>,
        client: ClientInfo,
    ) -> Result<IssuedSession, AccountError> {
        // The guess is taken before any Argon2 run; given back on every path that does not
        // end in a wrong code.
        let guess = self
            .admit_guess(Action::VerifyRegistration, &client, &email)
            .await?;
        let user = self
            .stores
            .users
            .find_by_email(&email)
            .await?
            .filter(|u| u.status == UserStatus::Pending);
        let user_id = user.as_ref().map(|u| u.id);
        let result = self
            .confirm_registration(user, email, code, password, &guess, client.clone())
            .await;
        let kind = AuthEventKind::RegistrationVerified;
        // A success is recorded with the session it starts (`start_session`).
        match &result {
            Ok(_) => {}
            Err(AccountError::InvalidCode | AccountError::PasswordRequired) => {
                self.record(kind, AuthOutcome::Failure, user_id, &client)
                    .await;
            }
            Err(_) => {}
        }
        result
    }

    async fn confirm_registration(
        &self,
        user: Option<User>,
        email: EmailAddress,
        code: OneTimeCode,
        password: Option<SecretString>,
        guess: &HitId,
        client: ClientInfo,
    ) -> Result<IssuedSession, AccountError> {
        // Asked for every address (a fresh id matches nothing), so the work done does not tell
        // whether the address has a pending account.
        let owner = user.as_ref().map_or_else(UserId::new, |u| u.id);
        let mut registrations = self.stores.users.pending_registrations(owner).await?;
        let chosen = match password {
            Some(password) => {
                let hashes = registrations
                    .iter()
                    .map(|r| r.password_hash.clone())
                    .collect();
                let password = Password::normalize(&password);
                match self.hasher.find_match(password, hashes).await? {
                    Some(index) => Some(registrations.swap_remove(index)),
                    None => {
                        // The code was not tried: it is not a guess.
                        self.give_back_guess(&email, guess).await;
                        return Err(AccountError::InvalidCode);
                    }
                }
            }
            None if registrations.len() > 1 => {
                // Only a request holding the code learns that more is needed.
                self.present_code(&email, CodePurpose::Registration, &code, OnMatch::Keep)
                    .await?;
                self.give_back_guess(&email, guess).await;
                tracing::info!("verification without a password refused: contested registration");
                return Err(AccountError::PasswordRequired);
            }
            None => registrations.into_iter().next(),
        };
        self.present_code(&email, CodePurpose::Registration, &code, OnMatch::Consume)
            .await?;
        self.give_back_guess(&email, guess).await;
        let (Some(user), Some(chosen)) = (user, chosen) else {
            return Err(AccountError::InvalidCode);
        };
        let now = self.clock.now();
        let activated = match self.stores.users.activate(user.id, &chosen, now).await {
            Ok(activated) => activated,
            Err(e) => {
                // The code is spent but the account is still pending: without it the owner's
                // mail is useless for the retry a 503 asks for, and a new code waits out the
                // resend cooldown. The same code goes back (when the code store answers).
                self.restore_code(&email, CodePurpose::Registration, &code)
                    .await;
                return Err(e.into());
            }
        };
        if !activated {
            return Err(AccountError::InvalidCode);
        }
        tracing::info!(user_id = %user.id.0, "account verified");
        let user = User {
            status: UserStatus::Active,
            password_hash: chosen.password_hash,
            full_name: chosen.full_name,
            verified_at: Some(now),
            updated_at: now,
            ..user
        };
        self.start_session(user, client, AuthEventKind::RegistrationVerified)
            .await
    }
}

/// Registrations kept per pending address: the newest ones, so the latest registration always
/// counts, and verifying with a password stays one Argon2 run (they share a salt).
const MAX_PENDING_REGISTRATIONS: u32 = 5;
