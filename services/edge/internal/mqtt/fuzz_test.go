package mqtt

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReadPacket ensures readPacket never panics and never accepts a packet
// over the size bound, whatever the bytes and the protocol level; the seed
// corpus in testdata holds valid CONNECT, PUBLISH, SUBSCRIBE and other
// encodings and garbage.
func FuzzReadPacket(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxSize = 512
		for _, version := range []byte{0, 4, 5} {
			r := bufio.NewReader(bytes.NewReader(data))
			for {
				pk, err := readPacket(r, version, maxSize)
				if err != nil {
					if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
						break
					}
					if reasonCode(err) < 0x80 {
						t.Fatalf("error %v maps to success code %#x", err, reasonCode(err))
					}
					break
				}
				if pk.FixedHeader.Remaining > maxSize || len(pk.Payload) > maxSize {
					t.Fatalf("packet over the bound: %d bytes", pk.FixedHeader.Remaining)
				}
			}
		}
	})
}
