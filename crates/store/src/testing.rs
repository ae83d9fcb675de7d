//! For test suites (this crate's and the server's): a PostgreSQL database of a test's own on
//! the server that `RINGSIDE_TEST_POSTGRES` names (`scripts/postgres.sh` starts one).

/// A new empty database called `ringside_test_<name>`, its URL; None when no server is
/// named, unless `RINGSIDE_REQUIRE_POSTGRES` is set (then that is a failure: the README's
/// test command sets it so the PostgreSQL runs cannot be skipped silently).
pub fn fresh_postgres(name: &str) -> Option<String> {
    let Ok(url) = std::env::var("RINGSIDE_TEST_POSTGRES") else {
        assert!(
            std::env::var("RINGSIDE_REQUIRE_POSTGRES").is_err(),
            "RINGSIDE_REQUIRE_POSTGRES is set but RINGSIDE_TEST_POSTGRES is not"
        );
        eprintln!("RINGSIDE_TEST_POSTGRES unset: {name} runs on SQLite only");
        return None;
    };
    let db = format!("ringside_test_{name}");
    let create = {
        let (url, db) = (url.clone(), db.clone());
        move || -> Result<(), postgres::Error> {
            let mut admin = postgres::Client::connect(&url, postgres::NoTls)?;
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))?;
            admin.batch_execute(&format!("CREATE DATABASE {db}"))
        }
    };
    // A plain thread: the blocking client may not run on an async test's runtime thread.
    std::thread::spawn(create)
        .join()
        .expect("create thread")
        .unwrap_or_else(|e| panic!("cannot create {db} at {url}: {e}"));
    let base = url.rsplit_once('/').expect("a database URL").0;
    Some(format!("{base}/{db}"))
}
