#![forbid(unsafe_code)]
//! `recfleet-certs`: create the fleet CA, issue role certificates, inspect them.
//!
//! Exit codes: 0 success, 1 failure (files, crypto), 2 bad command line
//! (clap), 64 a bad value (unknown role, invalid name or SAN, `--days 0`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use recfleet_certs::{
    describe_file, files, write_cert_files, CertError, CertInfo, CertificateAuthority, Identity,
    IssueRequest, Role,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Exit status for a bad value on an otherwise well-formed command line
/// (BSD sysexits EX_USAGE).
const EXIT_BAD_VALUE: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "recfleet-certs",
    version,
    about = "Private CA and role certificates for a recfleet fleet",
    long_about = "Private CA and role certificates for a recfleet fleet.\n\n\
        Every party (coordinator, agent, operator, viewer) gets a certificate signed by the \
        fleet CA; its role and name travel in the certificate as \
        spiffe://recfleet/<role>/<name>, and the coordinator authorizes requests by that role."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new CA (ca.pem, ca-key.pem) in DIR
    Init {
        /// Directory for the CA files (created with mode 0700)
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Replace an existing CA (invalidates every certificate it issued)
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate for a role and name, signed by the CA in DIR
    Issue {
        /// Directory holding ca.pem and ca-key.pem
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// coordinator, agent, operator or viewer
        #[arg(long, allow_hyphen_values = true)]
        role: String,
        /// 1-63 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit
        #[arg(long, allow_hyphen_values = true)]
        name: String,
        /// Validity in days, from now
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// DNS name or IP address clients dial (repeatable; coordinator
        /// default: localhost and 127.0.0.1)
        #[arg(long = "san", value_name = "NAME_OR_IP")]
        sans: Vec<String>,
        /// Where to write <role>-<name>.pem and <role>-<name>-key.pem [default: DIR]
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Overwrite existing certificate and key files
        #[arg(long)]
        force: bool,
    },
    /// Print what a certificate says: identity, subject, issuer, validity, SANs
    Show {
        /// A certificate PEM file
        file: PathBuf,
        /// Output format
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Why a command failed, which decides the exit status.
#[derive(Debug)]
enum Failure {
    /// A value the user typed is wrong; exit 64.
    BadValue(anyhow::Error),
    /// Anything else; exit 1.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Failed(e)
    }
}

/// Library errors caused by user input become [`Failure::BadValue`].
fn classify(e: CertError) -> Failure {
    if e.is_bad_input() {
        Failure::BadValue(e.into())
    } else {
        Failure::Failed(e.into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init { dir, force } => init(&dir, force),
        Command::Issue {
            dir,
            role,
            name,
            days,
            sans,
            out_dir,
            force,
        } => issue(&dir, &role, &name, days, sans, out_dir.as_deref(), force),
        Command::Show { file, output } => show(&file, output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::BadValue(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_BAD_VALUE)
        }
        Err(Failure::Failed(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init(dir: &Path, force: bool) -> Result<(), Failure> {
    let ca = CertificateAuthority::init(dir, force)
        .with_context(|| format!("creating ca in {}", dir.display()))?;
    println!(
        "wrote {} (ca certificate, valid until {})",
        CertificateAuthority::cert_path(dir).display(),
        rfc3339(ca.not_after())
    );
    println!(
        "wrote {} (ca private key, mode 0600: keep it secret, it can mint any identity)",
        CertificateAuthority::key_path(dir).display()
    );
    Ok(())
}

fn issue(
    dir: &Path,
    role: &str,
    name: &str,
    days: u32,
    sans: Vec<String>,
    out_dir: Option<&Path>,
    force: bool,
) -> Result<(), Failure> {
    let role: Role = role.parse().map_err(classify)?;
    let identity = Identity::new(role, name).map_err(classify)?;
    if days < 1 {
        return Err(Failure::BadValue(anyhow::anyhow!(
            "invalid --days \"{days}\": must be at least 1"
        )));
    }
    let out_dir = out_dir.unwrap_or(dir);
    let stem = identity.file_stem();

    // Refuse early, before generating anything, if the files are in the way.
    if !force {
        let paths = files::CertPaths::new(out_dir, &stem);
        for p in [&paths.cert, &paths.key] {
            if p.exists() {
                return Err(Failure::Failed(
                    CertError::AlreadyExists { path: p.clone() }.into(),
                ));
            }
        }
    }

    let ca = CertificateAuthority::load(dir)
        .with_context(|| format!("loading ca from {}", dir.display()))?;
    let request = IssueRequest::for_days(identity.clone(), sans, days).map_err(classify)?;
    let issued = ca.issue(&request).map_err(classify)?;
    let paths = write_cert_files(out_dir, &stem, &issued, force)
        .with_context(|| format!("writing certificate for {identity}"))?;
    println!(
        "issued {identity} ({}), valid until {}",
        identity.spiffe_uri(),
        rfc3339(request.not_after)
    );
    println!("wrote {} (certificate)", paths.cert.display());
    println!("wrote {} (private key, mode 0600)", paths.key.display());
    Ok(())
}

fn show(file: &Path, output: Output) -> Result<(), Failure> {
    let info = describe_file(file).map_err(anyhow::Error::from)?;
    let status = status(&info, OffsetDateTime::now_utc());
    match output {
        Output::Text => print_text(file, &info, status),
        Output::Json => {
            let json = serde_json::json!({
                "file": file.display().to_string(),
                "identity": info.identity.as_ref().map(ToString::to_string),
                "role": info.identity.as_ref().map(|i| i.role().as_str()),
                "name": info.identity.as_ref().map(Identity::name),
                "subject": info.subject,
                "issuer": info.issuer,
                "not_before": rfc3339(info.not_before),
                "not_after": rfc3339(info.not_after),
                "sans": info.sans,
                "is_ca": info.is_ca,
                "serial": info.serial,
                "status": status,
            });
            let text = serde_json::to_string_pretty(&json).context("encoding json")?;
            println!("{text}");
        }
    }
    Ok(())
}

fn status(info: &CertInfo, now: OffsetDateTime) -> &'static str {
    if info.is_expired_at(now) {
        "EXPIRED"
    } else if info.is_not_yet_valid_at(now) {
        "NOT YET VALID"
    } else {
        "valid"
    }
}

fn print_text(file: &Path, info: &CertInfo, status: &str) {
    println!("file:       {}", file.display());
    match &info.identity {
        Some(id) => {
            println!("identity:   {id}");
            println!("role:       {}", id.role());
            println!("name:       {}", id.name());
        }
        None if info.is_ca => println!("identity:   none (ca certificate)"),
        None => println!("identity:   none (no spiffe://recfleet/ uri san)"),
    }
    println!("subject:    {}", info.subject);
    println!("issuer:     {}", info.issuer);
    println!("not before: {}", rfc3339(info.not_before));
    println!("not after:  {}", rfc3339(info.not_after));
    if info.sans.is_empty() {
        println!("sans:       none");
    } else {
        println!("sans:       {}", info.sans.join(", "));
    }
    println!("ca:         {}", if info.is_ca { "yes" } else { "no" });
    println!("serial:     {}", info.serial);
    println!("status:     {status}");
}

/// RFC 3339, falling back to the `time` default format for dates RFC 3339
/// cannot express (years outside 0..=9999).
fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}
