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
    Some(fresh_database_at(&url, &format!("ringside_test_{name}")))
}

/// A new empty database `db` on the server at `url` (whose user may create databases); its
/// URL. Panics with the reason when it cannot.
pub fn fresh_database_at(url: &str, db: &str) -> String {
    admin_exec(
        url,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE); CREATE DATABASE {db}"),
    )
    .unwrap_or_else(|e| panic!("cannot create {db} at {url}: {e}"));
    let base = url.rsplit_once('/').expect("a database URL").0;
    format!("{base}/{db}")
}

/// Run `sql` (statements without parameters) on the server at `url`, from a plain thread of
/// its own (so it works from async tests too).
pub fn admin_exec(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            // One statement at a time: DROP/CREATE DATABASE may not share a transaction.
            for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                c.batch_execute(stmt)
                    .await
                    .map_err(|e| match e.as_db_error() {
                        Some(db) => db.message().to_string(),
                        None => e.to_string(),
                    })?;
            }
            Ok(())
        })
    })
    .join()
    .map_err(|_| "the admin thread panicked".to_string())?
}
