//! Rebuilds the crate when a migration is added: `embed_migrations!` reads the folder at
//! compile time, and Cargo would otherwise notice only changes to files it has already seen.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
