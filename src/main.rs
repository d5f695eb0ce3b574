//! The `wxgate` command line. Thin: parse arguments, set up logging, call the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "wxgate",
    version,
    about = "Sign visitors in with WeChat in front of any web app"
)]
struct Cli {
    /// Log format: text (default on a terminal) or json (default otherwise).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// The config file.
        #[arg(short, long, env = "WXGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file: print a summary, or every problem and exit 1.
    Check {
        /// The config file.
        #[arg(short, long, env = "WXGATE_CONFIG")]
        config: PathBuf,
    },
    /// Everything on one machine, no WeChat account needed: mock WeChat, a demo app and the proxy.
    Demo {
        /// Where the demo listens: one port for wxgate, the demo app and the mock's pages
        /// (0.0.0.0:PORT for other machines too, with --public-url).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The URL other machines and phones use to reach --listen, e.g.
        /// http://192.0.2.10:8080 (default: http://LISTEN).
        #[arg(long)]
        public_url: Option<String>,
        /// Sign in with the mock's WeCom organisation instead of its official account.
        #[arg(long)]
        wecom: bool,
        /// Also two apps on two more origins, signing in through this wxgate as their
        /// hub (an OpenID Connect provider) instead of WeChat.
        #[arg(long)]
        hub: bool,
    },
    /// The built-in mock WeChat platform alone, for tests and local development.
    MockWechat {
        /// Where the mock listens; point wechat.authorize_url and wechat.api_base_url here.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
    },
    /// Print a fresh session secret and an ES256 signing key (PKCS#8 PEM).
    Keygen,
    /// Inspect or end sessions (stores that keep sessions server-side).
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// How many sessions are live.
    Count {
        /// The config file (its [session] names the store).
        #[arg(short, long, env = "WXGATE_CONFIG")]
        config: PathBuf,
    },
    /// End every session of one WeChat user, on every replica.
    Revoke {
        /// The user's openid, as in the identity header's `sub` / `openid` claim.
        #[arg(long)]
        openid: String,
        /// The config file (its [session] names the store).
        #[arg(short, long, env = "WXGATE_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report(format_args!("wxgate: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    // Buffered access lines of requests answered before an error or a stop.
    wxgate::server::access_log::flush();
    match result {
        Ok(code) => code,
        Err(e) => {
            // One clear line, no backtrace. Each error's own message already says its
            // cause once: printing the chain (`{:#}`) would say it again.
            report(format_args!("wxgate: {e}"));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { config } => Ok(check(&config)),
        Command::Serve { config } => {
            let cfg = load(&config)?;
            wxgate::cli::serve(cfg, config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            listen,
            public_url,
            wecom,
            hub,
        } => {
            wxgate::cli::demo(listen, public_url, wecom, hub).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::MockWechat { listen } => {
            wxgate::cli::mock_wechat(listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen => {
            print!("{}", wxgate::cli::keygen_text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Sessions { command } => match command {
            SessionsCommand::Count { config } => {
                let cfg = load(&config)?;
                let n = wxgate::cli::sessions_count(&cfg).await?;
                println!("{n}");
                Ok(ExitCode::SUCCESS)
            }
            SessionsCommand::Revoke { openid, config } => {
                let cfg = load(&config)?;
                let n = wxgate::cli::sessions_revoke(&cfg, &openid).await?;
                println!("revoked {n} session(s) of {openid}");
                Ok(ExitCode::SUCCESS)
            }
        },
    }
}

/// One line on stderr. Unlike `eprintln!`, a stderr that refuses writes (closed pipe,
/// full disk) does not turn a clean failure exit into a panic.
fn report(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn load(path: &std::path::Path) -> anyhow::Result<wxgate::config::Config> {
    wxgate::config::load(path).map_err(|e| match e {
        wxgate::config::ConfigError::Read { .. } => anyhow::anyhow!("{e}"),
        wxgate::config::ConfigError::Invalid(_) => {
            anyhow::anyhow!("{}: {}", path.display(), e.problems().join("; "))
        }
    })
}

fn check(path: &std::path::Path) -> ExitCode {
    match wxgate::config::load(path) {
        Ok(cfg) => {
            println!("{}: OK", path.display());
            println!("{}", cfg.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            for p in e.problems() {
                eprintln!("{}: {p}", path.display());
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: Option<LogFormat>) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stderr().is_terminal(),
    };
    // A failing stderr (disk full, closed pipe) must never take the proxy down. By
    // default tracing-subscriber reports a failed write with `eprintln!`, which panics
    // when stderr itself is what failed: the event is dropped silently instead.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(false).init();
        wxgate::server::access_log::write_json_directly();
    } else {
        builder.init();
    }
}
