//! [`ScopeLock`]: a lock has one owner at a time, only the owner releases or extends it, and it
//! expires.

use std::{sync::Arc, time::Duration};

use anyhow::{Result, ensure};
use domain::{LockToken, RecomputeScope, TenantId, Window};
use time::macros::date;

use super::{range, slug};
use crate::ports::ScopeLock;

/// Scope locks with no lock held for `tenant`.
pub struct Fixture {
    pub locks: Arc<dyn ScopeLock>,
    pub tenant: TenantId,
}

/// How long a lock is taken for, unless it is meant to expire.
const TTL: Duration = Duration::from_secs(30);

/// The scope of a lock: the volume of 18 to 20 November by `window`.
fn scope(f: &Fixture, window: Window) -> Result<RecomputeScope> {
    Ok(RecomputeScope::new(
        f.tenant,
        slug("volume-by-period")?,
        window,
        range(date!(2026 - 11 - 18), date!(2026 - 11 - 20))?,
    ))
}

/// A lock and the tokens of its owner and of another caller.
struct Held {
    scope: RecomputeScope,
    owner: LockToken,
    intruder: LockToken,
}

/// The week scope acquired by `owner`.
async fn held(f: &Fixture) -> Result<Held> {
    let held = Held {
        scope: scope(f, Window::Week)?,
        owner: LockToken::generate(),
        intruder: LockToken::generate(),
    };
    f.locks.acquire(&held.scope, &held.owner, TTL).await?;
    Ok(held)
}

/// As [`held`], then released by its owner.
async fn released(f: &Fixture) -> Result<Held> {
    let held = held(f).await?;
    f.locks.release(&held.scope, &held.owner).await?;
    Ok(held)
}

/// The day scope acquired by `owner` for 50 ms, and 150 ms later.
async fn expired(f: &Fixture) -> Result<Held> {
    let expired = Held {
        scope: scope(f, Window::Day)?,
        owner: LockToken::generate(),
        intruder: LockToken::generate(),
    };
    f.locks
        .acquire(&expired.scope, &expired.owner, Duration::from_millis(50))
        .await?;
    std::thread::sleep(Duration::from_millis(150));
    Ok(expired)
}

/// As [`expired`], then acquired by `intruder`.
async fn taken_over(f: &Fixture) -> Result<Held> {
    let expired = expired(f).await?;
    f.locks
        .acquire(&expired.scope, &expired.intruder, TTL)
        .await?;
    Ok(expired)
}

pub async fn a_free_scope_is_acquired(f: &Fixture) -> Result<()> {
    ensure!(
        f.locks
            .acquire(&scope(f, Window::Week)?, &LockToken::generate(), TTL)
            .await?,
        "a free scope is acquired"
    );
    Ok(())
}

pub async fn a_held_scope_is_refused(f: &Fixture) -> Result<()> {
    let held = held(f).await?;
    ensure!(
        !f.locks.acquire(&held.scope, &held.intruder, TTL).await?,
        "a held scope is refused"
    );
    Ok(())
}

pub async fn only_the_owner_releases(f: &Fixture) -> Result<()> {
    let held = held(f).await?;
    ensure!(
        !f.locks.release(&held.scope, &held.intruder).await?,
        "only the owner releases"
    );
    Ok(())
}

pub async fn only_the_owner_extends(f: &Fixture) -> Result<()> {
    let held = held(f).await?;
    ensure!(
        !f.locks.extend(&held.scope, &held.intruder, TTL).await?,
        "only the owner extends"
    );
    Ok(())
}

pub async fn a_failed_release_by_another_leaves_the_lock_held(f: &Fixture) -> Result<()> {
    let held = held(f).await?;
    // Refused, as `only_the_owner_releases` and `only_the_owner_extends` check.
    f.locks.release(&held.scope, &held.intruder).await?;
    f.locks.extend(&held.scope, &held.intruder, TTL).await?;
    ensure!(
        !f.locks.acquire(&held.scope, &held.intruder, TTL).await?,
        "a failed release by another leaves the lock held"
    );
    Ok(())
}

pub async fn the_owner_extends(f: &Fixture) -> Result<()> {
    let held = held(f).await?;
    ensure!(
        f.locks.extend(&held.scope, &held.owner, TTL).await?,
        "the owner extends"
    );
    Ok(())
}

pub async fn the_owner_releases(f: &Fixture) -> Result<()> {
    let held = held(f).await?;
    f.locks.extend(&held.scope, &held.owner, TTL).await?;
    ensure!(
        f.locks.release(&held.scope, &held.owner).await?,
        "the owner releases"
    );
    Ok(())
}

pub async fn a_released_lock_is_not_released_twice(f: &Fixture) -> Result<()> {
    let held = released(f).await?;
    ensure!(
        !f.locks.release(&held.scope, &held.owner).await?,
        "a released lock is not released twice"
    );
    Ok(())
}

pub async fn a_released_scope_is_free_again(f: &Fixture) -> Result<()> {
    let held = released(f).await?;
    ensure!(
        f.locks.acquire(&held.scope, &held.intruder, TTL).await?,
        "a released scope is free again"
    );
    ensure!(
        f.locks.release(&held.scope, &held.intruder).await?,
        "and its new owner releases it"
    );
    Ok(())
}

pub async fn scopes_lock_independently(f: &Fixture) -> Result<()> {
    let held = held(f).await?;
    ensure!(
        f.locks
            .acquire(&scope(f, Window::Day)?, &held.owner, TTL)
            .await?,
        "scopes lock independently"
    );
    Ok(())
}

pub async fn an_expired_lock_cannot_be_extended(f: &Fixture) -> Result<()> {
    let expired = expired(f).await?;
    ensure!(
        !f.locks.extend(&expired.scope, &expired.owner, TTL).await?,
        "an expired lock cannot be extended"
    );
    Ok(())
}

pub async fn an_expired_lock_is_free(f: &Fixture) -> Result<()> {
    let expired = expired(f).await?;
    ensure!(
        f.locks
            .acquire(&expired.scope, &expired.intruder, TTL)
            .await?,
        "an expired lock is free"
    );
    Ok(())
}

pub async fn the_former_owner_cannot_release_the_new_owners_lock(f: &Fixture) -> Result<()> {
    let taken = taken_over(f).await?;
    ensure!(
        !f.locks.release(&taken.scope, &taken.owner).await?,
        "the former owner cannot release the new owner's lock"
    );
    ensure!(
        f.locks.release(&taken.scope, &taken.intruder).await?,
        "the new owner still releases it"
    );
    Ok(())
}
