// Rebuild when a migration is added: `sqlx::migrate!` embeds the folder at compile time
// (the job's own; the tests also embed the cases service's, to read its published view).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=../../services/cases/migrations");
}
