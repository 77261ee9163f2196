//! A moto server (local AWS API emulator): started from `$LINEAGE_MOTO_SERVER`
//! (exported by `scripts/test.sh`) or `PATH` on a free 127.0.0.1 port, killed on
//! drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "moto_server not found: run `scripts/services/moto.sh install` and \
     export LINEAGE_MOTO_SERVER=<the path it prints> (scripts/test.sh does both)";

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    crate::service_binary("LINEAGE_MOTO_SERVER", "moto_server", INSTALL_HINT)
}

fn tail(log: &Path) -> String {
    crate::tail(log, 20)
}

impl Moto {
    /// Starts moto and waits until it answers.
    pub fn start() -> Self {
        let bin = binary();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let mut last = String::new();
        for _ in 0..3 {
            let port = crate::free_port();
            let out = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}. {INSTALL_HINT}", bin.display()));
            let endpoint = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(60);
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(2))
                .build();
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    last = format!("moto_server exited ({status}):\n{}", tail(&log));
                    break;
                }
                if agent.get(&format!("{endpoint}/moto-api/")).call().is_ok() {
                    return Moto {
                        child,
                        endpoint,
                        _dir: dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    last = format!("moto_server did not answer within 60 s:\n{}", tail(&log));
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("{last}");
    }

    /// Creates a bucket (path-style; moto does not check signatures).
    pub fn create_bucket(&self, bucket: &str) {
        ureq::put(&format!("{}/{bucket}", self.endpoint))
            .send_bytes(b"")
            .unwrap_or_else(|e| panic!("creating bucket {bucket}: {e}"));
    }

    /// Uploads one object.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        ureq::put(&format!("{}/{bucket}/{key}", self.endpoint))
            .send_bytes(body)
            .unwrap_or_else(|e| panic!("uploading s3://{bucket}/{key}: {e}"));
    }
}

/// AWS SDK clients pointed at a moto server (test-side setup and checks: the code
/// under test builds its own), with the runtime they run on.
pub struct MotoClients {
    /// The runtime the calls block on.
    pub rt: tokio::runtime::Runtime,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// S3 (path-style).
    pub s3: aws_sdk_s3::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
}

impl Moto {
    /// SDK clients with fixed dummy credentials (`testing`/`testing`) and region
    /// `us-east-1`, so nothing is looked up off-host.
    pub fn clients(&self) -> MotoClients {
        use aws_config::{BehaviorVersion, Region};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(&self.endpoint)
                .credentials_provider(aws_sdk_iam::config::Credentials::new(
                    "testing", "testing", None, None, "test",
                ))
                .load(),
        );
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        MotoClients {
            iam: aws_sdk_iam::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            s3,
            rt,
        }
    }
}

impl MotoClients {
    /// Creates an IAM user with one access key; the key id.
    pub fn create_user_with_key(&self, user: &str) -> String {
        self.rt
            .block_on(self.iam.create_user().user_name(user).send())
            .unwrap();
        let out = self
            .rt
            .block_on(self.iam.create_access_key().user_name(user).send())
            .unwrap();
        out.access_key().unwrap().access_key_id().to_owned()
    }

    /// `Active` or `Inactive`.
    pub fn key_status(&self, user: &str, key: &str) -> String {
        let out = self
            .rt
            .block_on(self.iam.list_access_keys().user_name(user).send())
            .unwrap();
        out.access_key_metadata()
            .iter()
            .find(|m| m.access_key_id() == Some(key))
            .and_then(|m| m.status().map(|s| s.as_str().to_owned()))
            .unwrap_or_else(|| panic!("key {key} not listed for {user}"))
    }

    /// Creates a queue; its URL and ARN.
    pub fn create_queue(&self, name: &str) -> (String, String) {
        use aws_sdk_sqs::types::QueueAttributeName;
        let url = self
            .rt
            .block_on(self.sqs.create_queue().queue_name(name).send())
            .unwrap()
            .queue_url()
            .unwrap()
            .to_owned();
        let attrs = self
            .rt
            .block_on(
                self.sqs
                    .get_queue_attributes()
                    .queue_url(&url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .send(),
            )
            .unwrap();
        let arn = attrs.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();
        (url, arn)
    }

    /// Creates `bucket` and has it notify `queue_arn` of every object created.
    pub fn bucket_notifying(&self, bucket: &str, queue_arn: &str) {
        use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
        self.rt
            .block_on(self.s3.create_bucket().bucket(bucket).send())
            .unwrap();
        self.rt
            .block_on(
                self.s3
                    .put_bucket_notification_configuration()
                    .bucket(bucket)
                    .notification_configuration(
                        NotificationConfiguration::builder()
                            .queue_configurations(
                                QueueConfiguration::builder()
                                    .queue_arn(queue_arn)
                                    .events(Event::from("s3:ObjectCreated:*"))
                                    .build()
                                    .unwrap(),
                            )
                            .build(),
                    )
                    .send(),
            )
            .unwrap();
    }

    /// Uploads an object.
    pub fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.rt
            .block_on(
                self.s3
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(aws_sdk_s3::primitives::ByteStream::from(body))
                    .send(),
            )
            .unwrap();
    }
}
