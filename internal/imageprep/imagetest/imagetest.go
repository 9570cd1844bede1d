// Package imagetest makes image files for tests of code that must survive
// hostile images. Its PNGs are streamed through zlib from a row function,
// so a test can make a valid 40-megapixel file of a few kilobytes without
// ever holding its pixels, instead of committing large files.
package imagetest

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// PNG describes a PNG file to generate.
type PNG struct {
	Width, Height int
	// Depth and ColorType are the IHDR fields: ColorType 0 gray, 2 RGB,
	// 3 paletted, 4 gray+alpha, 6 RGBA; Depth 1, 2, 4, 8 or 16 as the PNG
	// specification allows for the colour type.
	Depth, ColorType int
	// Interlaced writes Adam7 passes; it needs Depth 8 or 16.
	Interlaced bool
	// Palette is the PLTE chunk (RGB triples), needed for ColorType 3.
	Palette []byte
	// TRNS, when not nil, is written as a tRNS chunk before the image data.
	TRNS []byte
	// Row fills row y with its unfiltered bytes (Depth × channels bits per
	// pixel, packed as PNG packs them); nil leaves every row zero.
	Row func(y int, row []byte)
}

// channels is the number of samples per pixel of each colour type.
var channels = map[int]int{0: 1, 2: 3, 3: 1, 4: 2, 6: 4}

// Encode returns the PNG file. It holds one row of pixels at a time.
func (p PNG) Encode() ([]byte, error) {
	ch, ok := channels[p.ColorType]
	if !ok || p.Width <= 0 || p.Height <= 0 {
		return nil, fmt.Errorf("imagetest: bad PNG %d×%d colour type %d", p.Width, p.Height, p.ColorType)
	}
	bits := ch * p.Depth
	if p.Interlaced && bits%8 != 0 {
		return nil, fmt.Errorf("imagetest: interlacing needs whole bytes per pixel, not %d bits", bits)
	}
	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(p.Width))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(p.Height))
	interlace := byte(0)
	if p.Interlaced {
		interlace = 1
	}
	ihdr = append(ihdr, byte(p.Depth), byte(p.ColorType), 0, 0, interlace)
	chunk(&out, "IHDR", ihdr)
	if p.Palette != nil {
		chunk(&out, "PLTE", p.Palette)
	}
	if p.TRNS != nil {
		chunk(&out, "tRNS", p.TRNS)
	}

	var idat bytes.Buffer
	zw, err := zlib.NewWriterLevel(&idat, zlib.BestSpeed)
	if err != nil {
		return nil, err
	}
	rowBytes := (bits*p.Width + 7) / 8
	row := make([]byte, rowBytes)
	fill := func(y int) {
		clear(row)
		if p.Row != nil {
			p.Row(y, row)
		}
	}
	if !p.Interlaced {
		for y := range p.Height {
			fill(y)
			zw.Write([]byte{0}) // filter type None
			zw.Write(row)
		}
	} else {
		bpp := bits / 8
		passRow := make([]byte, 0, rowBytes)
		for _, pass := range adam7 {
			for y := pass.y; y < p.Height; y += pass.dy {
				if pass.x >= p.Width {
					break
				}
				fill(y)
				passRow = passRow[:0]
				for x := pass.x; x < p.Width; x += pass.dx {
					passRow = append(passRow, row[x*bpp:(x+1)*bpp]...)
				}
				zw.Write([]byte{0})
				zw.Write(passRow)
			}
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	chunk(&out, "IDAT", idat.Bytes())
	chunk(&out, "IEND", nil)
	return out.Bytes(), nil
}

// adam7 are the seven passes of Adam7 interlacing: first column and row,
// and the steps between them.
var adam7 = [7]struct{ x, y, dx, dy int }{
	{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2},
}

// chunk writes one PNG chunk with its CRC.
func chunk(w *bytes.Buffer, typ string, data []byte) {
	binary.Write(w, binary.BigEndian, uint32(len(data)))
	w.WriteString(typ)
	w.Write(data)
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	binary.Write(w, binary.BigEndian, crc.Sum32())
}

// Case is one generated hostile image.
type Case struct {
	Name string
	Data []byte
}

// Hostile returns the images that once took the server down, each a valid
// PNG of at most a few hundred kilobytes:
//
//   - "line-40000000x1-1bit": 40,000,000×1 pixels of 1-bit gray, exactly
//     at the default 40-megapixel cap (its resize once allocated ~1.2 GB);
//   - "rgba64-6324x6324": 16-bit RGBA, 6324² pixels (320 MB decoded);
//   - "gray-6324x6324": 8-bit gray, 6324² pixels (40 MB decoded), a dark
//     square on a light background so that the whole pipeline runs.
func Hostile() ([]Case, error) {
	const side = 6324
	specs := []struct {
		name string
		png  PNG
	}{
		{"line-40000000x1-1bit", PNG{Width: 40_000_000, Height: 1, Depth: 1}},
		{"rgba64-6324x6324", PNG{Width: side, Height: side, Depth: 16, ColorType: 6, Row: func(y int, row []byte) {
			for i := range row {
				row[i] = 0xff
			}
		}}},
		{"gray-6324x6324", PNG{Width: side, Height: side, Depth: 8, Row: func(y int, row []byte) {
			for x := range row {
				row[x] = 230
				if x > side/4 && x < 3*side/4 && y > side/3 && y < 2*side/3 {
					row[x] = 30
				}
			}
		}}},
	}
	out := make([]Case, 0, len(specs))
	for _, s := range specs {
		data, err := s.png.Encode()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		out = append(out, Case{s.name, data})
	}
	return out, nil
}
