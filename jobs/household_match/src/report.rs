//! The match report's file: resumed at the length the checkpoint recorded, flushed to the
//! disk before each commit.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use super::BulkError;

/// The report file. `flush` reaches the disk (fsync): the checkpoint committed after it
/// must never claim bytes a power cut could lose.
#[derive(Debug)]
pub struct ReportFile {
    file: BufWriter<File>,
}

impl ReportFile {
    /// Opens `path` to continue an import whose checkpoint recorded `report_bytes`: lines
    /// past that length (written after the last commit) are cut off. A file shorter than
    /// recorded was moved or truncated by someone else: refused.
    pub fn resume(path: &Path, report_bytes: u64) -> Result<ReportFile, BulkError> {
        let io = |e| BulkError::io(path, e);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io)?;
        let found = file.metadata().map_err(io)?.len();
        if found < report_bytes {
            return Err(BulkError::ReportShorter {
                expected: report_bytes,
                found,
            });
        }
        file.set_len(report_bytes).map_err(io)?;
        file.seek(SeekFrom::Start(report_bytes)).map_err(io)?;
        Ok(ReportFile {
            file: BufWriter::with_capacity(1 << 16, file),
        })
    }
}

impl Write for ReportFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
}
