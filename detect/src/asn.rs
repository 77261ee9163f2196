//! IP → autonomous system lookups from an `ip2asn`-style TSV file
//! (`range_start  range_end  AS_number  country_code  AS_description`, one range per
//! line, IPv4 and/or IPv6, as published by iptoasn.com). Loaded once; lookups are a
//! binary search over the sorted ranges.

use std::net::IpAddr;
use std::path::Path;

/// A loaded ASN database.
#[derive(Debug, Default)]
pub struct AsnDatabase {
    ranges: Vec<(IpAddr, IpAddr, u32, String)>,
}

impl AsnDatabase {
    /// Loads a TSV file; a malformed line is an error naming the line.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let mut ranges = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            let parse = || -> Option<(IpAddr, IpAddr, u32, String)> {
                Some((
                    cols.first()?.trim().parse().ok()?,
                    cols.get(1)?.trim().parse().ok()?,
                    cols.get(2)?.trim().parse().ok()?,
                    cols.get(4).map(|s| s.trim().to_owned()).unwrap_or_default(),
                ))
            };
            let range = parse().ok_or_else(|| {
                format!(
                    "{}:{}: expected `range_start<TAB>range_end<TAB>AS_number<TAB>country<TAB>description`",
                    path.display(),
                    n + 1
                )
            })?;
            if range.2 != 0 {
                ranges.push(range);
            }
        }
        ranges.sort_by_key(|r| r.0);
        Ok(Self { ranges })
    }

    /// The AS number and name of an address, if a range holds it.
    pub fn lookup(&self, ip: IpAddr) -> Option<(u32, &str)> {
        let i = self.ranges.partition_point(|r| r.0 <= ip);
        let r = self.ranges.get(i.checked_sub(1)?)?;
        (ip <= r.1).then_some((r.2, r.3.as_str()))
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when no range was loaded.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_the_enclosing_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ip2asn.tsv");
        std::fs::write(
            &path,
            "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n10.0.0.0\t10.255.255.255\t0\tNone\tNot routed\n203.0.113.0\t203.0.114.255\t64500\tZZ\tEXAMPLE-NET\n2001:db8::\t2001:db8:ffff:ffff:ffff:ffff:ffff:ffff\t64501\tZZ\tEXAMPLE-V6\n",
        )
        .unwrap();
        let db = AsnDatabase::load(&path).unwrap();
        assert_eq!(db.len(), 3);
        assert_eq!(
            db.lookup("203.0.114.7".parse().unwrap()),
            Some((64500, "EXAMPLE-NET"))
        );
        assert_eq!(db.lookup("1.0.0.1".parse().unwrap()).unwrap().0, 13335);
        assert_eq!(db.lookup("10.1.2.3".parse().unwrap()), None, "not routed");
        assert_eq!(db.lookup("8.8.8.8".parse().unwrap()), None);
        assert_eq!(db.lookup("2001:db8::5".parse().unwrap()).unwrap().0, 64501);
        std::fs::write(&path, "garbage line\n").unwrap();
        assert!(AsnDatabase::load(&path).unwrap_err().contains(":1:"));
    }
}
