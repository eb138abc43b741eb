package ovf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits on a descriptor. Real descriptors are a few hundred KiB at most
// (ovftool's largest templates are under 100 KiB); these bound memory and
// time for hostile ones.
const (
	MaxDescriptorBytes = 16 << 20
	maxElements        = 200_000
	maxDepth           = 64
	maxAttrs           = 64
)

// ErrInvalid marks a descriptor or package that cannot be imported; the
// message says what is wrong with it.
var ErrInvalid = errors.New("invalid OVF package")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// node is one XML element. Descriptors are read into a small tree first
// and interpreted from it: OVF 0.9 names its sections by xsi:type and 1.x
// by element name, and vendors add their own elements anywhere, which a
// tree handles more simply than struct tags.
type node struct {
	space, name string
	attrs       []xml.Attr
	children    []*node
	text        string
	line        int
}

// parseTree reads an XML document with bounded size, depth and element
// count. DTDs are refused outright: OVF never needs one, and a DTD is how
// entity-expansion bombs and external entities get in. encoding/xml does
// not expand entities other than the five predefined ones anyway; this
// makes the refusal explicit and the message clear.
func parseTree(data []byte) (*node, error) {
	if len(data) > MaxDescriptorBytes {
		return nil, invalidf("descriptor is %d bytes; the limit is %d", len(data), MaxDescriptorBytes)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.CharsetReader = func(charset string, in io.Reader) (io.Reader, error) {
		switch strings.ToLower(charset) {
		case "utf-8", "utf8", "us-ascii", "ascii":
			return in, nil
		}
		return nil, fmt.Errorf("unsupported character set %q (OVF descriptors are UTF-8)", charset)
	}
	var root *node
	var stack []*node
	count := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			line, _ := d.InputPos()
			return nil, invalidf("descriptor is not well-formed XML (line %d): %v", line, unwrapSyntax(err))
		}
		switch t := tok.(type) {
		case xml.Directive:
			if bytes.HasPrefix(bytes.TrimSpace(t), []byte("DOCTYPE")) {
				return nil, invalidf("descriptor has a DOCTYPE (DTD); OVF needs none and DTDs can carry entity bombs and external entities, so they are refused")
			}
			return nil, invalidf("descriptor has an XML directive <!%s>", truncate(string(t), 40))
		case xml.StartElement:
			count++
			if count > maxElements {
				return nil, invalidf("descriptor has more than %d elements", maxElements)
			}
			if len(stack) >= maxDepth {
				return nil, invalidf("descriptor nests elements deeper than %d", maxDepth)
			}
			if len(t.Attr) > maxAttrs {
				return nil, invalidf("element <%s> has %d attributes", t.Name.Local, len(t.Attr))
			}
			line, _ := d.InputPos()
			n := &node{space: t.Name.Space, name: t.Name.Local, attrs: t.Copy().Attr, line: line}
			if len(stack) == 0 {
				if root != nil {
					return nil, invalidf("descriptor has more than one root element")
				}
				root = n
			} else {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(t)
			}
		}
	}
	if root == nil {
		return nil, invalidf("descriptor is empty: no XML element in it")
	}
	return root, nil
}

func unwrapSyntax(err error) string {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return se.Msg
	}
	return err.Error()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// attr returns an attribute by local name, whatever its namespace (OVF
// attributes are ovf:-qualified in 1.x, sometimes unqualified in the wild).
func (n *node) attr(local string) string {
	v, _ := n.lookup(local)
	return v
}

func (n *node) lookup(local string) (string, bool) {
	for _, a := range n.attrs {
		if a.Name.Local == local && a.Name.Space != "xmlns" {
			return strings.TrimSpace(a.Value), true
		}
	}
	return "", false
}

// attrNS returns an attribute of a given namespace.
func (n *node) attrNS(space, local string) string {
	for _, a := range n.attrs {
		if a.Name.Local == local && a.Name.Space == space {
			return strings.TrimSpace(a.Value)
		}
	}
	return ""
}

// kind is the element's OVF name: its local name, or for OVF 0.9's
// <Section xsi:type="ovf:DiskSection_Type"> and <Content
// xsi:type="ovf:VirtualSystem_Type"> the type without suffix.
func (n *node) kind() string {
	if n.name == "Section" || n.name == "Content" {
		if t := n.attrNS(xsiNS, "type"); t != "" {
			if i := strings.LastIndexByte(t, ':'); i >= 0 {
				t = t[i+1:]
			}
			return strings.TrimSuffix(t, "_Type")
		}
	}
	return n.name
}

func (n *node) all(kind string) []*node {
	var out []*node
	for _, c := range n.children {
		if c.kind() == kind {
			out = append(out, c)
		}
	}
	return out
}

func (n *node) first(kind string) *node {
	for _, c := range n.children {
		if c.kind() == kind {
			return c
		}
	}
	return nil
}

// childText is the trimmed text of the first child with that local name.
func (n *node) childText(local string) string {
	for _, c := range n.children {
		if c.name == local {
			return strings.TrimSpace(c.text)
		}
	}
	return ""
}

func (n *node) required() bool {
	v, ok := n.lookup("required")
	return !ok || v == "true" || v == "1"
}
