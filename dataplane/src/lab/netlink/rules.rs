//! Policy-routing rules (`ip rule`), for routing everything through a tunnel the way
//! wg-quick does: the tunnel's own packets carry a firewall mark and keep using the main
//! table; everything else goes to a table whose default route is the tunnel.

use std::io;

use super::{Message, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, Netlink};

const RTM_NEWRULE: u16 = 32;
const RTM_DELRULE: u16 = 33;
const FRA_FWMARK: u16 = 10;
const FRA_SUPPRESS_PREFIXLEN: u16 = 14;
const FRA_TABLE: u16 = 15;
const FR_ACT_TO_TBL: u8 = 1;
const FIB_RULE_INVERT: u32 = 0x2;
const RT_TABLE_COMPAT: u8 = 252;

/// One rule: look up `table` for packets that match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutingRule {
    /// IPv6 rather than IPv4.
    pub ipv6: bool,
    /// The table to look up.
    pub table: u32,
    /// Match packets *without* this firewall mark (`not fwmark N`).
    pub not_fwmark: Option<u32>,
    /// Ignore routes with a prefix this short or shorter (`suppress_prefixlength N`).
    pub suppress_prefixlen: Option<u32>,
}

impl RoutingRule {
    fn message(&self, kind: u16, flags: u16) -> Message {
        // struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action, flags.
        let mut header = [0u8; 12];
        header[0] = if self.ipv6 {
            libc::AF_INET6 as u8
        } else {
            libc::AF_INET as u8
        };
        header[4] = u8::try_from(self.table).unwrap_or(RT_TABLE_COMPAT);
        header[7] = FR_ACT_TO_TBL;
        if self.not_fwmark.is_some() {
            header[8..12].copy_from_slice(&FIB_RULE_INVERT.to_ne_bytes());
        }
        let mut message = Message::new(kind, flags, &header);
        message.attr_u32(FRA_TABLE, self.table);
        if let Some(mark) = self.not_fwmark {
            message.attr_u32(FRA_FWMARK, mark);
        }
        if let Some(len) = self.suppress_prefixlen {
            message.attr_u32(FRA_SUPPRESS_PREFIXLEN, len);
        }
        message
    }
}

impl Netlink {
    /// Adds `rule` (`ip rule add ...`).
    pub fn add_rule(&mut self, rule: &RoutingRule) -> io::Result<()> {
        self.request(rule.message(RTM_NEWRULE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE))
            .map(drop)
    }

    /// Removes the first rule matching `rule` (`ip rule del ...`).
    pub fn delete_rule(&mut self, rule: &RoutingRule) -> io::Result<()> {
        self.request(rule.message(RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK))
            .map(drop)
    }
}
