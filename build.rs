//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds `migrations/` at
//! compile time, and cargo would otherwise not notice a new or edited file there.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
