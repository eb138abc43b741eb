package disk

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// The layout of an ISO WriteISO writes: 2048-byte sectors; the system
// area (0-15), the primary volume descriptor (16), the terminator (17),
// the path tables (18, 19), the root folder (20), then the files.
const (
	isoSector    = 2048
	isoRootLBA   = 20
	isoFirstFile = 21
)

// WriteISO writes a small ISO 9660 (level 1) image holding files in its
// root folder: how a VM gets its OVF environment (ovf-env.xml, on a
// CD-ROM labeled "OVF ENV", as VMware's ISO transport does) without any
// tool installed. Names must be 8.3 upper case (OVF_ENV.XML); Linux shows
// them in lower case.
func WriteISO(w io.Writer, label string, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for n := range files {
		if !validISOName(n) {
			return fmt.Errorf("write ISO: %q is not an 8.3 upper-case ISO 9660 name", n)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	lba := uint32(isoFirstFile)
	loc := map[string]uint32{}
	for _, n := range names {
		loc[n] = lba
		lba += uint32((len(files[n]) + isoSector - 1) / isoSector)
		if len(files[n]) == 0 {
			lba++
		}
	}
	total := lba
	now := time.Now().UTC()
	img := make([]byte, int(total)*isoSector)
	// The root folder.
	var root []byte
	root = append(root, isoDirRecord([]byte{0}, isoRootLBA, isoSector, true, now)...)
	root = append(root, isoDirRecord([]byte{1}, isoRootLBA, isoSector, true, now)...)
	for _, n := range names {
		root = append(root, isoDirRecord([]byte(n+";1"), loc[n], uint32(len(files[n])), false, now)...)
	}
	if len(root) > isoSector {
		return fmt.Errorf("write ISO: too many files for one folder sector")
	}
	copy(img[isoRootLBA*isoSector:], root)
	for _, n := range names {
		copy(img[int(loc[n])*isoSector:], files[n])
	}
	// Path tables (little- and big-endian), each with the root only.
	isoPathTable(img[18*isoSector:], false)
	isoPathTable(img[19*isoSector:], true)
	isoPrimaryVolume(img[16*isoSector:], label, total, now)
	// Terminator.
	term := img[17*isoSector:]
	term[0] = 255
	copy(term[1:], "CD001")
	term[6] = 1
	_, err := w.Write(img)
	return err
}

// isoDirRecord is a directory record of a file or folder (dir) at extent,
// of size bytes, dated now.
func isoDirRecord(name []byte, extent, size uint32, dir bool, now time.Time) []byte {
	l := 33 + len(name)
	if l%2 == 1 {
		l++
	}
	r := make([]byte, l)
	r[0] = byte(l)
	both32(r[2:], extent)
	both32(r[10:], size)
	r[18], r[19], r[20], r[21], r[22], r[23] = byte(now.Year()-1900), byte(now.Month()), byte(now.Day()), byte(now.Hour()), byte(now.Minute()), byte(now.Second())
	if dir {
		r[25] = 2
	}
	both16(r[28:], 1)
	r[32] = byte(len(name))
	copy(r[33:], name)
	return r
}

// isoPathTable writes a path table holding the root only, big-endian (be)
// or little-endian, into its sector p.
func isoPathTable(p []byte, be bool) {
	p[0] = 1
	if be {
		binary.BigEndian.PutUint32(p[2:], isoRootLBA)
		binary.BigEndian.PutUint16(p[6:], 1)
	} else {
		binary.LittleEndian.PutUint32(p[2:], isoRootLBA)
		binary.LittleEndian.PutUint16(p[6:], 1)
	}
}

// isoPrimaryVolume writes the primary volume descriptor of a volume of
// total sectors into its sector pvd.
func isoPrimaryVolume(pvd []byte, label string, total uint32, now time.Time) {
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	pvd[6] = 1
	pad(pvd[8:40], "LINUX")
	pad(pvd[40:72], strings.ToUpper(label))
	both32(pvd[80:], total)
	both16(pvd[120:], 1)
	both16(pvd[124:], 1)
	both16(pvd[128:], isoSector)
	both32(pvd[132:], 10)
	binary.LittleEndian.PutUint32(pvd[140:], 18)
	binary.BigEndian.PutUint32(pvd[148:], 19)
	copy(pvd[156:190], isoDirRecord([]byte{0}, isoRootLBA, isoSector, true, now))
	for _, f := range [][2]int{{190, 318}, {318, 446}, {446, 574}, {574, 702}, {702, 739}, {739, 776}, {776, 813}} {
		pad(pvd[f[0]:f[1]], "")
	}
	pad(pvd[574:702], "VDC")
	stamp := []byte(now.Format("20060102150405") + "00")
	copy(pvd[813:], stamp)
	copy(pvd[830:], stamp)
	copy(pvd[847:], "0000000000000000")
	copy(pvd[864:], stamp)
	pvd[881] = 1
}

func validISOName(n string) bool {
	base, ext, _ := strings.Cut(n, ".")
	if len(base) == 0 || len(base) > 8 || len(ext) > 3 {
		return false
	}
	for _, r := range base + ext {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

func pad(b []byte, s string) {
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
}
