//! Account recovery and password changes: a reset with an e-mailed code, a change by the
//! signed-in owner. Either one ends the other sessions and mails a notice, in the transaction
//! that sets the password.

use secrecy::SecretString;

use super::{AccountError, Accounts, Action, Authenticated, ClientInfo};
use crate::domain::{
    AuthEventKind, AuthOutcome, CodePurpose, EmailAddress, OnMatch, OneTimeCode, Password,
    PasswordHash, SessionId, User, UserStatus,
};
use crate::email::{Email, Message};
use crate::store::PasswordChange;

/// How long a "password changed" notice stays worth sending while the transport is down.
const NOTICE_MAX_AGE: time::Duration = time::Duration::days(1);

impl Accounts {
    /// `POST /api/auth/password-reset`: a reset code to an active account, nothing to any
    /// other address, one answer for all. Within the resend cooldown nothing is sent (the
    /// code already mailed stays good), and the answer is the same. Nothing is revoked.
    #[tracing::instrument(skip_all)]
    pub async fn request_password_reset(
        &self,
        email: EmailAddress,
        client: ClientInfo,
    ) -> Result<(), AccountError> {
        self.admit(Action::PasswordReset, &client, Some(&email))
            .await?;
        let purpose = CodePurpose::PasswordReset;
        let sent = self
            .with_cooldown(
                &email,
                purpose,
                &client,
                self.resend_code_claimed(&email, purpose),
            )
            .await;
        match sent {
            Ok(user_id) => {
                self.record(
                    AuthEventKind::PasswordResetRequested,
                    AuthOutcome::Success,
                    user_id,
                    &client,
                )
                .await;
                Ok(())
            }
            Err(AccountError::Cooldown(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/auth/password-reset/confirm`: with the reset code, sets `new_password`
    /// (already held to the policy, but for the name rule, checked here against the
    /// account's name), ends every session and mails a notice. Signs nobody in.
    ///
    /// The code is proven before the name rule is checked and spent only once the password is
    /// accepted, so a refused password leaves it usable and the name rule tells nothing to
    /// anyone without the code.
    #[tracing::instrument(skip_all)]
    pub async fn reset_password(
        &self,
        email: EmailAddress,
        code: OneTimeCode,
        new_password: Password,
        client: ClientInfo,
    ) -> Result<(), AccountError> {
        // A reset code is guessed from the same per-address budget as every other code.
        let guess = self
            .admit_guess(Action::PasswordResetConfirm, &client, &email)
            .await?;
        let purpose = CodePurpose::PasswordReset;
        let user = self
            .stores
            .users
            .find_by_email(&email)
            .await?
            .filter(|u| u.status == UserStatus::Active);
        let user_id = user.as_ref().map(|u| u.id);
        if let Err(e) = self
            .present_code(&email, purpose, &code, OnMatch::Keep)
            .await
        {
            return self.reset_failed(e, user_id, &client).await;
        }
        self.give_back_guess(&email, &guess).await;
        // Only an active account is ever sent a reset code.
        let Some(user) = user else {
            return self
                .reset_failed(AccountError::InvalidCode, user_id, &client)
                .await;
        };
        self.passwords
            .check_name(&new_password, &user.full_name)
            .map_err(AccountError::PasswordRejected)?;
        let hash = self.hasher.hash(new_password).await?;
        if let Err(e) = self
            .present_code(&email, purpose, &code, OnMatch::Consume)
            .await
        {
            return self.reset_failed(e, user_id, &client).await;
        }
        let ended = self
            .set_password(&user, hash, None, AuthEventKind::PasswordReset, &client)
            .await?
            .ok_or(AccountError::InvalidCode)?;
        tracing::info!(user_id = %user.id, ended, "password reset; every session ended");
        Ok(())
    }

    /// Records a reset refused for its code, and returns `e`.
    async fn reset_failed(
        &self,
        e: AccountError,
        user_id: Option<crate::domain::UserId>,
        client: &ClientInfo,
    ) -> Result<(), AccountError> {
        if matches!(e, AccountError::InvalidCode) {
            self.record(
                AuthEventKind::PasswordReset,
                AuthOutcome::Failure,
                user_id,
                client,
            )
            .await;
        }
        Err(e)
    }

    /// `POST /api/auth/password`: the signed-in owner sets `new_password` (held to the policy
    /// at the edge) after proving `current`; every other session ends, this one stays, and a
    /// notice is mailed. Returns how many sessions ended.
    #[tracing::instrument(skip_all)]
    pub async fn change_password(
        &self,
        caller: &Authenticated,
        current: SecretString,
        new_password: Password,
        client: ClientInfo,
    ) -> Result<u64, AccountError> {
        let current = Password::normalize(&current);
        let stored = caller.user.password_hash.clone();
        if !self.hasher.verify(current, Some(stored)).await? {
            self.record(
                AuthEventKind::PasswordChanged,
                AuthOutcome::Failure,
                Some(caller.user.id),
                &client,
            )
            .await;
            return Err(AccountError::WrongCurrentPassword);
        }
        let hash = self.hasher.hash(new_password).await?;
        let ended = self
            .set_password(
                &caller.user,
                hash,
                Some(caller.session.id),
                AuthEventKind::PasswordChanged,
                &client,
            )
            .await?
            .ok_or(AccountError::Unauthenticated)?;
        tracing::info!(user_id = %caller.user.id, ended, "password changed; other sessions ended");
        Ok(ended)
    }

    /// Sets `user`'s password to `hash` and ends its sessions but `keep`, with the notice and
    /// the audit event, in one transaction. None when the account is no longer active.
    async fn set_password(
        &self,
        user: &User,
        hash: PasswordHash,
        keep: Option<SessionId>,
        kind: AuthEventKind,
        client: &ClientInfo,
    ) -> Result<Option<u64>, AccountError> {
        let now = self.clock.now();
        let notice = Email {
            to: user.email.clone(),
            name: Some(user.full_name.clone()),
            locale: user.locale,
            message: Message::PasswordChanged,
        };
        let mail = self.seal(&notice, now + NOTICE_MAX_AGE)?;
        let event = self.auth_event(kind, AuthOutcome::Success, Some(user.id), client);
        let change = PasswordChange {
            user_id: user.id,
            password_hash: hash,
            keep,
            reason: kind.as_str(),
            now,
        };
        let ended = self
            .stores
            .users
            .set_password(&change, &mail, &event)
            .await?;
        if ended.is_some() {
            self.outbox.wake();
        }
        Ok(ended)
    }
}
