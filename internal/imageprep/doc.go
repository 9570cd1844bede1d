// Package imageprep turns untrusted image bytes into the 28×28 8-bit
// grayscale image a Fashion-MNIST model expects.
//
// # Safe decoding
//
// Decode accepts PNG, JPEG, GIF (first frame), WebP and BMP. The format is
// taken from the magic bytes (Sniff), never from a declared type. The
// header is read first (DecodeConfig) and an image is refused before any
// pixel buffer is allocated when it has no pixels, more than a pixel cap
// (Limits.MaxPixels, default DefaultMaxPixels), a long edge more than
// MaxAspect (28) times its short edge, or needs more decoder memory than a
// byte budget (Limits.MaxBytes, default DefaultMaxBytes = 64 MiB). The
// memory is estimated per format from the header: bits per pixel of the
// decoded image type, MCU padding and coefficients of progressive JPEGs,
// interlaced PNG passes, tRNS chunks that turn gray into NRGBA, and so on;
// tests check the estimate against measured allocations. So a few hundred
// bytes claiming 10,000×10,000 pixels cost nothing. Decoder panics are
// recovered. A PNG followed by extra bytes (a polyglot) is refused. Errors
// wrap ErrUnsupported, ErrTooLarge or ErrCorrupt.
//
// # Memory
//
// The conversion's memory is bounded by its output, not its input: the
// first step reduces an image of 2048 pixels or more per edge by an integer
// box filter straight from the decoded buffer, a few thousand pixels at a
// time, into a working gray image of fewer than 2048 pixels per edge, and
// every later step works on that. So Prepare allocates at most
// Limits.PeakBytes for an image it accepts: the decoder budget plus about
// 4 MiB, 68 MiB at the defaults (a 6324² gray PNG measures 39.6 MiB), and
// never a full-resolution float, RGBA or second gray copy.
//
// # The Fashion-MNIST conversion
//
// Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017, §2) was made from product
// photos on light backgrounds by a fixed pipeline. ToInput applies the same
// steps to any image that is not already dataset-like (28×28 with a dark
// background, see IsDatasetLike), so that a photo reaches the model looking
// like the images it was trained on:
//
//  1. Grayscale: ITU-R BT.601 luma, as image/color.GrayModel computes it
//     (for JPEG and WebP the Y channel is used directly), reduced to under
//     2048 pixels per edge as described above. Transparent pixels are
//     composited onto the background: the colour of the opaque corner
//     pixels, or white when every corner is transparent (a cut-out product
//     on a transparent canvas reads as one on white). The paper converts to
//     gray last; converting first only changes the trim distance below from
//     RGB distance to luma distance.
//  2. Trim: the reference colour is the mean of the four corner pixels.
//     Rows and columns at each edge are removed while every pixel in them is
//     within 5% of the maximum intensity (12.75 of 255) of that colour. An
//     image that is uniform everywhere is kept whole.
//  3. Resize so the longest edge is 28 pixels, keeping the aspect ratio.
//     The paper subsamples; we use golang.org/x/image/draw.BiLinear, which
//     when shrinking widens its triangle kernel to span every source pixel
//     and so averages areas instead of picking pixels. Subsampling aliases
//     badly on multi-megapixel photos (fine texture turns into noise); the
//     triangle filter gives smooth results without the ringing of a
//     Catmull-Rom kernel, and the next step restores edge contrast.
//  4. Sharpen with an unsharp mask: a Gaussian of radius 1 (a 3×3 kernel)
//     and standard deviation 1.0, amount 1, edges replicated.
//  5. Extend the shorter edge to 28 pixels, centred, with the background
//     colour.
//  6. Negate when the background is light (reference above mid-gray), so the
//     object is bright on black as in the dataset.
//  7. Level (our addition): map the background intensity to 0 and stretch
//     the rest linearly, so a photo on a light-gray rather than white
//     background still gets the black background the model was trained on.
//     On the white backgrounds of the original photos this is a no-op.
//  8. Round to 8-bit gray.
//
// Real photos (objects on floors, beds, gradients and shadows; FindObject
// in object.go) replace steps 2 and 5–7: the background is estimated at
// every pixel from the image's border band (gradients, vignetting and
// shadows along the border carry into the interior), the object is the
// largest solid part of a mask of pixels that differ from that background
// in colour, are brighter, are much darker than a shadow, or lie on a sharp
// outline (so a white item on white survives), grown into fainter
// neighbouring pixels; the crop is its bounding box and every pixel the
// mask calls background becomes black. Inside the object the intensity is
// the luma distance from the local background (at least 48 of 255, so a
// white item on white keeps its silhouette). Resizing and sharpening are
// as in steps 3–4. An image in which nothing stands out goes through the
// plain steps above.
//
// Every step is plain integer or float64 arithmetic without concurrency, so
// the same input gives the same 28×28 output on every run.
package imageprep
