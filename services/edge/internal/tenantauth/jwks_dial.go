package tenantauth

import (
	"fmt"
	"net/netip"
	"slices"
	"syscall"
)

// addressGuard refuses the connections of JWKS fetches to addresses an
// edge must not reach on a tenant admin's behalf. It runs as the dialer's
// Control function, on the address each connection is about to use, after
// DNS resolution: a host name that resolves to a refused address, or
// rebinds to one between two fetches, is refused too, and no packet is
// sent to it.
type addressGuard struct {
	// allow exempts networks (the operator's identity provider).
	allow []netip.Prefix
}

// control is a net.Dialer Control function.
func (g addressGuard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not an address", ErrAddressRefused, network, address)
	}
	return g.check(ap.Addr())
}

// check refuses ip if it is internal and not allowed.
func (g addressGuard) check(ip netip.Addr) error {
	ip = ip.WithZone("").Unmap()
	why := internal(ip)
	if why == "" || slices.ContainsFunc(g.allow, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		return nil
	}
	return fmt.Errorf("%w: %s is %s (an operator allows it with --jwks-allow-networks)", ErrAddressRefused, ip, why)
}

// internalNetworks are refused besides what netip classifies
// (loopback, private, link-local, multicast, unspecified).
var internalNetworks = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), `"this network"`},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (carrier-grade NAT, some clouds' metadata)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved or broadcast"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
}

// Prefixes that carry an IPv4 address, judged by it.
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// internal says why ip (unmapped, without zone) is an address of the edge
// itself, its link or a private network, or "" if it is none of these.
// The cloud metadata addresses are among them: 169.254.169.254 and
// fd00:ec2::254 (link-local, unique local), 100.100.100.200 (shared
// address space).
func internal(ip netip.Addr) string {
	switch {
	case !ip.IsValid():
		return "invalid"
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private (RFC 1918, unique local)"
	case ip.IsLinkLocalUnicast():
		return "link-local (cloud metadata)"
	case ip.IsMulticast():
		return "multicast"
	}
	for _, n := range internalNetworks {
		if n.prefix.Contains(ip) {
			return n.why
		}
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		if why := internal(netip.AddrFrom4([4]byte(b[12:16]))); why != "" {
			return "NAT64 of " + why
		}
	case sixToFour.Contains(ip):
		if why := internal(netip.AddrFrom4([4]byte(b[2:6]))); why != "" {
			return "6to4 of " + why
		}
	}
	return ""
}
