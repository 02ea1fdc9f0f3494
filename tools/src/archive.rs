//! `nsq_to_file`'s output file for one topic: naming, rotation, gzip members,
//! fsync, and the move from the work directory to the output directory.
//!
//! Messages are written to a buffer and only count as stored once
//! [`FileLogger::sync`] has fsynced them; the caller finishes them after that.
//! With gzip, every sync ends the current gzip member, so the file is a
//! sequence of complete members and everything acknowledged can be read back
//! even if the process dies right after.

use crate::strftime::strftime;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where files go and when they rotate, shared by every topic.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    pub output_dir: PathBuf,
    /// In-progress files live here and move to `output_dir` when closed;
    /// the same as `output_dir` when no `--work-dir` is given.
    pub work_dir: PathBuf,
    /// strftime format of `<DATETIME>`.
    pub datetime_format: String,
    /// gzip level (1-9) when `--gzip` is on.
    pub gzip: Option<u32>,
    /// Rotate once a file has grown past this many bytes; 0 = never.
    pub rotate_size: u64,
    /// Rotate files opened this long ago; zero = never.
    pub rotate_interval: Duration,
}

impl ArchiveOptions {
    /// Whether file names need `<REV>` to stay unique: upstream requires it
    /// with gzip, rotation or a work directory.
    pub fn needs_rev(&self) -> bool {
        self.gzip.is_some()
            || self.rotate_size > 0
            || !self.rotate_interval.is_zero()
            || self.work_dir != self.output_dir
    }

    /// New files are created exclusively (never appended to) with gzip or
    /// interval rotation, as upstream does.
    fn exclusive(&self) -> bool {
        self.gzip.is_some() || !self.rotate_interval.is_zero()
    }
}

/// `--host-identifier` with `<SHORT_HOST>` and `<HOSTNAME>` replaced; the
/// short hostname when it is empty.
pub fn host_identifier(flag: &str, hostname: &str) -> String {
    let short = hostname.split('.').next().unwrap_or_default();
    if flag.is_empty() {
        return short.to_string();
    }
    flag.replace("<SHORT_HOST>", short)
        .replace("<HOSTNAME>", hostname)
}

/// The file name pattern of one topic: every token but `<DATETIME>` and
/// `<REV>` replaced, `<REV>` dropped when it is not needed, and `.gz`
/// appended with gzip unless the name already ends so.
///
/// `<SUFFIX>` is ours, not upstream's: it becomes `.gz` with gzip and nothing
/// otherwise, for formats that want the extension somewhere specific.
pub fn filename_template(
    format: &str,
    opts: &ArchiveOptions,
    topic: &str,
    host: &str,
    pid: u32,
) -> Result<String, String> {
    let mut name = if opts.needs_rev() {
        if !format.contains("<REV>") {
            return Err(
                "missing <REV> in --filename-format when gzip, rotation, or work dir enabled"
                    .into(),
            );
        }
        format.to_string()
    } else {
        format.replace("<REV>", "")
    };
    let suffix = if opts.gzip.is_some() { ".gz" } else { "" };
    name = name
        .replace("<TOPIC>", topic)
        .replace("<HOST>", host)
        .replace("<PID>", &pid.to_string())
        .replace("<SUFFIX>", suffix);
    if opts.gzip.is_some() && !name.ends_with(".gz") {
        name.push_str(".gz");
    }
    Ok(name)
}

/// `<REV>` as upstream writes it: a dash and six digits.
fn with_rev(name: &str, rev: u32) -> String {
    name.replace("<REV>", &format!("-{rev:06}"))
}

/// A name read as relative to the directory it is joined to, as Go's
/// `path.Join` treats it.
fn under(dir: &Path, name: &str) -> PathBuf {
    dir.join(name.trim_start_matches('/'))
}

fn make_parent(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o770)
            .create(dir),
        _ => Ok(()),
    }
}

/// Moves `src` to `dst` unless `dst` exists (a hard link, then an unlink), so
/// that two archivers never overwrite each other's files.
fn exclusive_rename(src: &Path, dst: &Path) -> io::Result<()> {
    fs::hard_link(src, dst)?;
    fs::remove_file(src)
}

/// The open file. In gzip mode a member is begun on the first write after
/// a sync, so that no empty members are written.
struct Output {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    member: Option<GzEncoder<BufWriter<File>>>,
}

impl Output {
    fn writer(&mut self, gzip: Option<u32>) -> &mut dyn Write {
        if let Some(level) = gzip {
            if self.member.is_none() {
                let file = self.file.take().expect("a file outside a gzip member");
                self.member = Some(GzEncoder::new(file, Compression::new(level)));
            }
            return self.member.as_mut().expect("member just begun");
        }
        self.file.as_mut().expect("a plain file")
    }

    /// Ends the gzip member, if one is open, and fsyncs.
    fn sync(&mut self) -> io::Result<()> {
        if let Some(member) = self.member.take() {
            self.file = Some(member.finish()?);
        }
        let file = self.file.as_mut().expect("a file after the member ended");
        file.flush()?;
        file.get_ref().sync_all()
    }
}

/// One topic's archive file.
pub struct FileLogger {
    opts: ArchiveOptions,
    /// The name pattern with `<DATETIME>` and possibly `<REV>` left.
    template: String,
    out: Option<Output>,
    /// The current name: `<DATETIME>` filled in, `<REV>` not.
    filename: String,
    opened_at: Instant,
    /// Bytes written to the current file (before compression), plus what it
    /// held when opened.
    filesize: u64,
    rev: u32,
}

/// How far the revision number may climb looking for a free name.
const MAX_REV: u32 = 999_999;

impl FileLogger {
    pub fn new(opts: ArchiveOptions, template: String) -> FileLogger {
        FileLogger {
            opts,
            template,
            out: None,
            filename: String::new(),
            opened_at: Instant::now(),
            filesize: 0,
            rev: 0,
        }
    }

    /// The path being written, if a file is open.
    pub fn path(&self) -> Option<&Path> {
        self.out.as_ref().map(|o| o.path.as_path())
    }

    fn current_filename(&self) -> String {
        let datetime = strftime(&self.opts.datetime_format, &chrono::Local::now());
        self.template.replace("<DATETIME>", &datetime)
    }

    /// Whether the next message should go to a new file: none is open, the
    /// name changed (the datetime moved on), or the file is old or big enough.
    pub fn needs_rotation(&self) -> bool {
        let Some(out) = &self.out else {
            return true;
        };
        let filename = self.current_filename();
        if filename != self.filename {
            tracing::info!(filename = %filename, "new filename, rotating");
            return true;
        }
        let age = self.opened_at.elapsed();
        if !self.opts.rotate_interval.is_zero() && age > self.opts.rotate_interval {
            tracing::info!(?age, "rotate interval passed since open, rotating");
            return true;
        }
        if self.opts.rotate_size > 0 && self.filesize > self.opts.rotate_size {
            tracing::info!(path = %out.path.display(), size = self.filesize,
                rotate_size = self.opts.rotate_size, "file past rotate size, rotating");
            return true;
        }
        false
    }

    /// Closes the current file and opens the next: revision 0 for a new name,
    /// otherwise the next revision, skipping names that exist (in the work or
    /// output directory) and, with size rotation, files already too big.
    pub fn rotate(&mut self) -> io::Result<()> {
        self.close()?;
        let filename = self.current_filename();
        if filename != self.filename {
            self.rev = 0;
        } else {
            self.rev += 1;
        }
        self.filename = filename;
        self.opened_at = Instant::now();
        let full = under(&self.opts.work_dir, &self.filename);
        make_parent(&full)?;
        let full = full.to_string_lossy().into_owned();
        loop {
            if self.rev > MAX_REV {
                return Err(io::Error::other(format!(
                    "no free revision for {full} up to {MAX_REV}"
                )));
            }
            let path = PathBuf::from(with_rev(&full, self.rev));
            if self.opts.work_dir != self.opts.output_dir {
                let published = self.output_path(&path);
                make_parent(&published)?;
                if published.try_exists()? {
                    tracing::warn!(path = %published.display(), "output file already exists");
                    self.rev += 1;
                    continue;
                }
            }
            let mut options = OpenOptions::new();
            if self.opts.exclusive() {
                options.write(true).create_new(true);
            } else {
                options.append(true).create(true);
            }
            let file = match options.open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    tracing::warn!(path = %path.display(), "working file already exists");
                    self.rev += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.filesize = file.metadata()?.len();
            if self.opts.rotate_size > 0 && self.filesize > self.opts.rotate_size {
                tracing::info!(path = %path.display(), size = self.filesize,
                    "existing file past rotate size, trying the next revision");
                self.rev += 1;
                continue;
            }
            tracing::info!(path = %path.display(), "opening");
            self.out = Some(Output {
                path,
                file: Some(BufWriter::with_capacity(64 * 1024, file)),
                member: None,
            });
            return Ok(());
        }
    }

    /// Where a file of the work directory ends up.
    fn output_path(&self, work_path: &Path) -> PathBuf {
        let relative = work_path
            .strip_prefix(&self.opts.work_dir)
            .unwrap_or(work_path);
        self.opts.output_dir.join(relative)
    }

    /// Writes one message body and a newline; opens a file first if none is.
    pub fn write_message(&mut self, body: &[u8]) -> io::Result<()> {
        if self.out.is_none() {
            self.rotate()?;
        }
        let gzip = self.opts.gzip;
        let out = self.out.as_mut().expect("a file was just opened");
        let writer = out.writer(gzip);
        writer.write_all(body)?;
        writer.write_all(b"\n")?;
        self.filesize += body.len() as u64 + 1;
        Ok(())
    }

    /// Makes everything written so far durable (ending the gzip member).
    pub fn sync(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.sync(),
            None => Ok(()),
        }
    }

    /// Syncs and closes the file, then moves it to the output directory
    /// without overwriting anything: on a clash it takes the next free
    /// revision there.
    pub fn close(&mut self) -> io::Result<()> {
        let Some(mut out) = self.out.take() else {
            return Ok(());
        };
        out.sync()?;
        let path = out.path.clone();
        drop(out);
        if self.opts.work_dir == self.opts.output_dir {
            return Ok(());
        }
        let dst = self.output_path(&path);
        tracing::info!(from = %path.display(), to = %dst.display(), "moving finished file");
        match exclusive_rename(&path, &dst) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            Err(_) => {}
        }
        let name = Path::new(&self.filename)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains("<REV>") {
            return Err(io::Error::other(format!(
                "{} exists and the file name has no <REV> to vary",
                dst.display()
            )));
        }
        let dir = dst.parent().map(Path::to_path_buf).unwrap_or_default();
        for rev in self.rev + 1..=MAX_REV {
            let candidate = dir.join(with_rev(&name, rev));
            match exclusive_rename(&path, &candidate) {
                Ok(()) => {
                    tracing::warn!(path = %candidate.display(),
                        "destination existed; renamed the finished file to avoid overwriting");
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "no free name for {} in {}",
            path.display(),
            dir.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn opts(dir: &Path) -> ArchiveOptions {
        ArchiveOptions {
            output_dir: dir.to_path_buf(),
            work_dir: dir.to_path_buf(),
            datetime_format: "%Y".into(),
            gzip: None,
            rotate_size: 0,
            rotate_interval: Duration::ZERO,
        }
    }

    #[test]
    fn template_tokens() {
        let plain = opts(Path::new("/x"));
        let t = filename_template("<TOPIC>.<HOST><REV>.<PID>.log<SUFFIX>", &plain, "t", "h", 7);
        assert_eq!(t.unwrap(), "t.h.7.log");
        let gz = ArchiveOptions {
            gzip: Some(6),
            ..plain.clone()
        };
        let t = filename_template("<TOPIC><REV>.<DATETIME>.log", &gz, "t", "h", 7);
        assert_eq!(t.unwrap(), "t<REV>.<DATETIME>.log.gz");
        let t = filename_template("<TOPIC><REV>.log<SUFFIX>", &gz, "t", "h", 7);
        assert_eq!(t.unwrap(), "t<REV>.log.gz");
        assert!(filename_template("<TOPIC>.log", &gz, "t", "h", 7).is_err());
        let work = ArchiveOptions {
            work_dir: "/w".into(),
            ..plain
        };
        assert!(filename_template("<TOPIC>.log", &work, "t", "h", 7).is_err());
    }

    #[test]
    fn host_identifier_tokens() {
        assert_eq!(host_identifier("", "box.example.com"), "box");
        assert_eq!(
            host_identifier("<SHORT_HOST>-<HOSTNAME>", "box.example.com"),
            "box-box.example.com"
        );
    }

    #[test]
    fn size_rotation_takes_the_next_revision() {
        let dir = tempfile::tempdir().unwrap();
        let o = ArchiveOptions {
            rotate_size: 10,
            ..opts(dir.path())
        };
        let template = filename_template("t<REV>.log", &o, "t", "h", 1).unwrap();
        let mut f = FileLogger::new(o, template);
        for body in ["0123456789", "abc", "def"] {
            if f.needs_rotation() {
                f.rotate().unwrap();
            }
            f.write_message(body.as_bytes()).unwrap();
        }
        f.close().unwrap();
        let first = fs::read_to_string(dir.path().join("t-000000.log")).unwrap();
        let second = fs::read_to_string(dir.path().join("t-000001.log")).unwrap();
        assert_eq!(
            (first.as_str(), second.as_str()),
            ("0123456789\n", "abc\ndef\n")
        );
    }

    #[test]
    fn gzip_members_decompress_to_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let o = ArchiveOptions {
            gzip: Some(9),
            ..opts(dir.path())
        };
        let template = filename_template("t<REV>.log", &o, "t", "h", 1).unwrap();
        let mut f = FileLogger::new(o, template);
        f.rotate().unwrap();
        f.write_message(b"one").unwrap();
        f.sync().unwrap();
        f.sync().unwrap();
        f.write_message(b"two").unwrap();
        f.close().unwrap();
        let raw = fs::read(dir.path().join("t-000000.log.gz")).unwrap();
        let mut all = String::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_string(&mut all)
            .unwrap();
        assert_eq!(all, "one\ntwo\n");
        let mut first = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut first)
            .unwrap();
        assert_eq!(first, "one\n", "each sync ends a member");
    }

    #[test]
    fn work_dir_files_move_without_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        let (work, output) = (dir.path().join("work"), dir.path().join("out"));
        let o = ArchiveOptions {
            work_dir: work.clone(),
            output_dir: output.clone(),
            ..opts(dir.path())
        };
        let template = filename_template("sub/t<REV>.log", &o, "t", "h", 1).unwrap();
        fs::create_dir_all(output.join("sub")).unwrap();
        fs::write(output.join("sub/t-000000.log"), "old\n").unwrap();
        let mut f = FileLogger::new(o, template);
        f.rotate().unwrap();
        assert_eq!(f.path().unwrap(), work.join("sub/t-000001.log"));
        f.write_message(b"new").unwrap();
        // Someone else takes the name meanwhile: the move picks the next one.
        fs::write(output.join("sub/t-000001.log"), "other\n").unwrap();
        f.close().unwrap();
        assert_eq!(
            fs::read_to_string(output.join("sub/t-000002.log")).unwrap(),
            "new\n"
        );
        assert_eq!(
            fs::read_to_string(output.join("sub/t-000000.log")).unwrap(),
            "old\n"
        );
        assert!(!work.join("sub/t-000001.log").exists());
    }
}
