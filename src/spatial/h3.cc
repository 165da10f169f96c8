#include "spatial/h3.h"

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <unordered_set>

namespace tributary::h3 {
namespace {

// ---------------------------------------------------------------------------------------
// Constants of the grid.

constexpr double kPi = 3.14159265358979323846;
constexpr double kTwoPi = 6.28318530717958647692;
constexpr double kHalfPi = 1.5707963267948966192;
constexpr double kDegToRad = kPi / 180.0;
constexpr double kRadToDeg = 180.0 / kPi;
constexpr double kEpsilon = 1e-16;
constexpr double kSqrt7 = 2.6457513110645905905016157536392604257102;
constexpr double kSqrt3Over2 = 0.8660254037844386467637231707529361834714;
constexpr double kInvSin60 = 1.1547005383792515290182975610039149112953;
/// Rotation between a Class II grid and the Class III grid below it: asin(sqrt(3/28)).
constexpr double kAp7RotRads = 0.333473172251832115336090755351601070065900389;
/// Gnomonic distance from a face centre to a neighbouring resolution-0 cell centre,
/// in units of the sphere radius (the resolution-0 hexagon "unit length").
constexpr double kRes0UGnomonic = 0.38196601125010500003;
/// Authalic radius of the Earth in km.
constexpr double kEarthRadiusKm = 6371.007180918475;

constexpr int kNumFaces = 20;
constexpr int kMaxFaceCoord = 2;  ///< largest IJK component of a res-0 cell on its face
constexpr int kInvalidBaseCell = 127;

// Index digits. A digit is a direction in IJK space: the unit vector of each digit is
// listed in kDigitUnit. Digit 1 (k axis) is the sub-sequence deleted around pentagons.
enum Digit : int {
  kCenter = 0,
  kK = 1,
  kJ = 2,
  kJK = 3,
  kI = 4,
  kIK = 5,
  kIJ = 6,
  kInvalidDigit = 7,
};

// Quadrants of a face, indexes into kFaceNeighbors.
enum FaceDir : int { kFaceCenter = 0, kFaceIJ = 1, kFaceKI = 2, kFaceJK = 3 };

// Bit layout of an index.
constexpr int kModeOffset = 59;
constexpr int kResOffset = 52;
constexpr int kBaseCellOffset = 45;
constexpr int kDigitBits = 3;
constexpr uint64_t kDigitMask = 7;
constexpr uint64_t kCellMode = 1;
/// Mode 1, resolution 0, base cell 0, every digit 7: the template every index starts from.
constexpr uint64_t kInitIndex = (kCellMode << kModeOffset) | ((uint64_t{1} << 45) - 1);

struct Ijk {
  int i = 0;
  int j = 0;
  int k = 0;
};

struct FaceIjk {
  int face = 0;
  Ijk c;
};

struct Vec2 {
  double x = 0;
  double y = 0;
};

struct Vec3 {
  double x = 0;
  double y = 0;
  double z = 0;
};

struct Geo {  // radians
  double lat = 0;
  double lng = 0;
};

// ---------------------------------------------------------------------------------------
// Data of the icosahedron and the base cells, as published with the H3 specification.

/// Face centres, latitude/longitude in radians.
constexpr Geo kFaceCenterGeo[kNumFaces] = {
    {0.803582649718989942, 1.248397419617396099},   {1.307747883455638156, 2.536945009877921159},
    {1.054751253523952054, -1.347517358900396623},  {0.600191595538186799, -0.450603909469755746},
    {0.491715428198773866, 0.401988202911306943},   {0.172745327415618701, 1.678146885280433686},
    {0.605929321571350690, 2.953923329812411617},   {0.427370518328979641, -1.888876200336285401},
    {-0.079066118549212831, -0.733429513380867741}, {-0.230961644455383637, 0.506495587332349035},
    {0.079066118549212831, 2.408163140208925497},   {0.230961644455383637, -2.635097066257444203},
    {-0.172745327415618701, -1.463445768309359553}, {-0.605929321571350690, -0.187669323777381622},
    {-0.427370518328979641, 1.252716453253507838},  {-0.600191595538186799, 2.690988744120037492},
    {-0.491715428198773866, -2.739604450678486295}, {-0.803582649718989942, -1.893195233972397139},
    {-1.307747883455638156, -0.604647643711872080}, {-1.054751253523952054, 1.794075294689396615},
};

/// Face centres on the unit sphere.
constexpr Vec3 kFaceCenterPoint[kNumFaces] = {
    {0.2199307791404606, 0.6583691780274996, 0.7198475378926182},
    {-0.2139234834501421, 0.1478171829550703, 0.9656017935214205},
    {0.1092625278784797, -0.4811951572873210, 0.8697775121287253},
    {0.7428567301586791, -0.3593941678278028, 0.5648005936517033},
    {0.8112534709140969, 0.3448953237639384, 0.4721387736413930},
    {-0.1055498149613921, 0.9794457296411413, 0.1718874610009365},
    {-0.8075407579970092, 0.1533552485898818, 0.5695261994882688},
    {-0.2846148069787907, -0.8644080972654206, 0.4144792552473539},
    {0.7405621473854482, -0.6673299564565524, -0.0789837646326737},
    {0.8512303986474293, 0.4722343788582681, -0.2289137388687808},
    {-0.7405621473854481, 0.6673299564565524, 0.0789837646326737},
    {-0.8512303986474292, -0.4722343788582682, 0.2289137388687808},
    {0.1055498149613919, -0.9794457296411413, -0.1718874610009365},
    {0.8075407579970092, -0.1533552485898819, -0.5695261994882688},
    {0.2846148069787908, 0.8644080972654204, -0.4144792552473539},
    {-0.7428567301586791, 0.3593941678278027, -0.5648005936517033},
    {-0.8112534709140971, -0.3448953237639382, -0.4721387736413930},
    {-0.2199307791404607, -0.6583691780274996, -0.7198475378926182},
    {0.2139234834501420, -0.1478171829550704, -0.9656017935214205},
    {-0.1092625278784796, 0.4811951572873210, -0.8697775121287253},
};

/// Azimuth (radians, clockwise from north) from each face centre along its Class II
/// i axis; the j and k axes follow at -120 and -240 degrees.
constexpr double kFaceAxisIAzimuth[kNumFaces] = {
    5.619958268523939882, 5.760339081714187279, 0.780213654393430055, 0.430469363979999913,
    6.130269123335111400, 2.692877706530642877, 2.982963003477243874, 3.532912002790141181,
    3.494305004259568154, 3.003214169499538391, 5.930472956509811562, 0.138378484090254847,
    0.448714947059150361, 0.158629650112549365, 5.891865957979238535, 2.711123289609793325,
    3.294508837434268316, 3.804819692245439833, 3.664438879055192436, 2.361378999196363184,
};

/// How a neighbouring face's IJK system sits relative to a face's: for each quadrant,
/// the neighbour, the translation (in res-0 units, scaled by resolution) and the number
/// of 60-degree counter-clockwise rotations.
struct FaceOrient {
  int face;
  Ijk translate;
  int ccw_rot60;
};

constexpr FaceOrient kFaceNeighbors[kNumFaces][4] = {
    {{0, {0, 0, 0}, 0}, {4, {2, 0, 2}, 1}, {1, {2, 2, 0}, 5}, {5, {0, 2, 2}, 3}},
    {{1, {0, 0, 0}, 0}, {0, {2, 0, 2}, 1}, {2, {2, 2, 0}, 5}, {6, {0, 2, 2}, 3}},
    {{2, {0, 0, 0}, 0}, {1, {2, 0, 2}, 1}, {3, {2, 2, 0}, 5}, {7, {0, 2, 2}, 3}},
    {{3, {0, 0, 0}, 0}, {2, {2, 0, 2}, 1}, {4, {2, 2, 0}, 5}, {8, {0, 2, 2}, 3}},
    {{4, {0, 0, 0}, 0}, {3, {2, 0, 2}, 1}, {0, {2, 2, 0}, 5}, {9, {0, 2, 2}, 3}},
    {{5, {0, 0, 0}, 0}, {10, {2, 2, 0}, 3}, {14, {2, 0, 2}, 3}, {0, {0, 2, 2}, 3}},
    {{6, {0, 0, 0}, 0}, {11, {2, 2, 0}, 3}, {10, {2, 0, 2}, 3}, {1, {0, 2, 2}, 3}},
    {{7, {0, 0, 0}, 0}, {12, {2, 2, 0}, 3}, {11, {2, 0, 2}, 3}, {2, {0, 2, 2}, 3}},
    {{8, {0, 0, 0}, 0}, {13, {2, 2, 0}, 3}, {12, {2, 0, 2}, 3}, {3, {0, 2, 2}, 3}},
    {{9, {0, 0, 0}, 0}, {14, {2, 2, 0}, 3}, {13, {2, 0, 2}, 3}, {4, {0, 2, 2}, 3}},
    {{10, {0, 0, 0}, 0}, {5, {2, 2, 0}, 3}, {6, {2, 0, 2}, 3}, {15, {0, 2, 2}, 3}},
    {{11, {0, 0, 0}, 0}, {6, {2, 2, 0}, 3}, {7, {2, 0, 2}, 3}, {16, {0, 2, 2}, 3}},
    {{12, {0, 0, 0}, 0}, {7, {2, 2, 0}, 3}, {8, {2, 0, 2}, 3}, {17, {0, 2, 2}, 3}},
    {{13, {0, 0, 0}, 0}, {8, {2, 2, 0}, 3}, {9, {2, 0, 2}, 3}, {18, {0, 2, 2}, 3}},
    {{14, {0, 0, 0}, 0}, {9, {2, 2, 0}, 3}, {5, {2, 0, 2}, 3}, {19, {0, 2, 2}, 3}},
    {{15, {0, 0, 0}, 0}, {16, {2, 0, 2}, 1}, {19, {2, 2, 0}, 5}, {10, {0, 2, 2}, 3}},
    {{16, {0, 0, 0}, 0}, {17, {2, 0, 2}, 1}, {15, {2, 2, 0}, 5}, {11, {0, 2, 2}, 3}},
    {{17, {0, 0, 0}, 0}, {18, {2, 0, 2}, 1}, {16, {2, 2, 0}, 5}, {12, {0, 2, 2}, 3}},
    {{18, {0, 0, 0}, 0}, {19, {2, 0, 2}, 1}, {17, {2, 2, 0}, 5}, {13, {0, 2, 2}, 3}},
    {{19, {0, 0, 0}, 0}, {15, {2, 0, 2}, 1}, {18, {2, 2, 0}, 5}, {14, {0, 2, 2}, 3}},
};

/// Base cell and rotation (60-degree counter-clockwise steps into the base cell's own
/// orientation) of each res-0 IJK position (i, j, k in 0..2) on each face; entry
/// [face][i * 9 + j * 3 + k].
struct BaseCellOrient {
  uint8_t base_cell;
  uint8_t ccw_rot60;
};

constexpr BaseCellOrient kFaceIjkBaseCells[kNumFaces][27] = {
    {{16, 0}, {18, 0}, {24, 0}, {33, 0}, {30, 0}, {32, 3}, {49, 1}, {48, 3}, {50, 3},
     {8, 0},  {5, 5},  {10, 5}, {22, 0}, {16, 0}, {18, 0}, {41, 1}, {33, 0}, {30, 0},
     {4, 0},  {0, 5},  {2, 5},  {15, 1}, {8, 0},  {5, 5},  {31, 1}, {22, 0}, {16, 0}},
    {{2, 0}, {6, 0}, {14, 0}, {10, 0}, {11, 0}, {17, 3}, {24, 1}, {23, 3}, {25, 3},
     {0, 0}, {1, 5}, {9, 5},  {5, 0},  {2, 0},  {6, 0},  {18, 1}, {10, 0}, {11, 0},
     {4, 1}, {3, 5}, {7, 5},  {8, 1},  {0, 0},  {1, 5},  {16, 1}, {5, 0},  {2, 0}},
    {{7, 0}, {21, 0}, {38, 0}, {9, 0}, {19, 0}, {34, 3}, {14, 1}, {20, 3}, {36, 3},
     {3, 0}, {13, 5}, {29, 5}, {1, 0}, {7, 0},  {21, 0}, {6, 1},  {9, 0},  {19, 0},
     {4, 2}, {12, 5}, {26, 5}, {0, 1}, {3, 0},  {13, 5}, {2, 1},  {1, 0},  {7, 0}},
    {{26, 0}, {42, 0}, {58, 0}, {29, 0}, {43, 0}, {62, 3}, {38, 1}, {47, 3}, {64, 3},
     {12, 0}, {28, 5}, {44, 5}, {13, 0}, {26, 0}, {42, 0}, {21, 1}, {29, 0}, {43, 0},
     {4, 3},  {15, 5}, {31, 5}, {3, 1},  {12, 0}, {28, 5}, {7, 1},  {13, 0}, {26, 0}},
    {{31, 0}, {41, 0}, {49, 0}, {44, 0}, {53, 0}, {61, 3}, {58, 1}, {65, 3}, {75, 3},
     {15, 0}, {22, 5}, {33, 5}, {28, 0}, {31, 0}, {41, 0}, {42, 1}, {44, 0}, {53, 0},
     {4, 4},  {8, 5},  {16, 5}, {12, 1}, {15, 0}, {22, 5}, {26, 1}, {28, 0}, {31, 0}},
    {{50, 0}, {48, 0}, {49, 3}, {32, 0}, {30, 3}, {33, 3}, {24, 3}, {18, 3}, {16, 3},
     {70, 0}, {67, 0}, {66, 3}, {52, 3}, {50, 0}, {48, 0}, {37, 3}, {32, 0}, {30, 3},
     {83, 0}, {87, 3}, {85, 3}, {74, 3}, {70, 0}, {67, 0}, {57, 1}, {52, 3}, {50, 0}},
    {{25, 0}, {23, 0}, {24, 3}, {17, 0}, {11, 3}, {10, 3}, {14, 3}, {6, 3},  {2, 3},
     {45, 0}, {39, 0}, {37, 3}, {35, 3}, {25, 0}, {23, 0}, {27, 3}, {17, 0}, {11, 3},
     {63, 0}, {59, 3}, {57, 3}, {56, 3}, {45, 0}, {39, 0}, {46, 3}, {35, 3}, {25, 0}},
    {{36, 0}, {20, 0}, {14, 3}, {34, 0}, {19, 3}, {9, 3},  {38, 3}, {21, 3}, {7, 3},
     {55, 0}, {40, 0}, {27, 3}, {54, 3}, {36, 0}, {20, 0}, {51, 3}, {34, 0}, {19, 3},
     {72, 0}, {60, 3}, {46, 3}, {73, 3}, {55, 0}, {40, 0}, {71, 3}, {54, 3}, {36, 0}},
    {{64, 0}, {47, 0}, {38, 3}, {62, 0}, {43, 3}, {29, 3}, {58, 3}, {42, 3}, {26, 3},
     {84, 0}, {69, 0}, {51, 3}, {82, 3}, {64, 0}, {47, 0}, {76, 3}, {62, 0}, {43, 3},
     {97, 0}, {89, 3}, {71, 3}, {98, 3}, {84, 0}, {69, 0}, {96, 3}, {82, 3}, {64, 0}},
    {{75, 0},  {65, 0},  {58, 3}, {61, 0},  {53, 3}, {44, 3}, {49, 3}, {41, 3}, {31, 3},
     {94, 0},  {86, 0},  {76, 3}, {81, 3},  {75, 0}, {65, 0}, {66, 3}, {61, 0}, {53, 3},
     {107, 0}, {104, 3}, {96, 3}, {101, 3}, {94, 0}, {86, 0}, {85, 3}, {81, 3}, {75, 0}},
    {{57, 0}, {59, 0}, {63, 3}, {74, 0}, {78, 3}, {79, 3}, {83, 3}, {92, 3}, {95, 3},
     {37, 0}, {39, 3}, {45, 3}, {52, 0}, {57, 0}, {59, 0}, {70, 3}, {74, 0}, {78, 3},
     {24, 0}, {23, 3}, {25, 3}, {32, 3}, {37, 0}, {39, 3}, {50, 3}, {52, 0}, {57, 0}},
    {{46, 0}, {60, 0}, {72, 3}, {56, 0}, {68, 3}, {80, 3}, {63, 3}, {77, 3}, {90, 3},
     {27, 0}, {40, 3}, {55, 3}, {35, 0}, {46, 0}, {60, 0}, {45, 3}, {56, 0}, {68, 3},
     {14, 0}, {20, 3}, {36, 3}, {17, 3}, {27, 0}, {40, 3}, {25, 3}, {35, 0}, {46, 0}},
    {{71, 0}, {89, 0}, {97, 3}, {73, 0}, {91, 3}, {103, 3}, {72, 3}, {88, 3}, {105, 3},
     {51, 0}, {69, 3}, {84, 3}, {54, 0}, {71, 0}, {89, 0},  {55, 3}, {73, 0}, {91, 3},
     {38, 0}, {47, 3}, {64, 3}, {34, 3}, {51, 0}, {69, 3},  {36, 3}, {54, 0}, {71, 0}},
    {{96, 0}, {104, 0}, {107, 3}, {98, 0}, {110, 3}, {115, 3}, {97, 3}, {111, 3}, {119, 3},
     {76, 0}, {86, 3},  {94, 3},  {82, 0}, {96, 0},  {104, 0}, {84, 3}, {98, 0},  {110, 3},
     {58, 0}, {65, 3},  {75, 3},  {62, 3}, {76, 0},  {86, 3},  {64, 3}, {82, 0},  {96, 0}},
    {{85, 0}, {87, 0}, {83, 3}, {101, 0}, {102, 3}, {100, 3}, {107, 3}, {112, 3}, {114, 3},
     {66, 0}, {67, 3}, {70, 3}, {81, 0},  {85, 0},  {87, 0},  {94, 3},  {101, 0}, {102, 3},
     {49, 0}, {48, 3}, {50, 3}, {61, 3},  {66, 0},  {67, 3},  {75, 3},  {81, 0},  {85, 0}},
    {{95, 0},  {92, 0},  {83, 0},  {79, 0},  {78, 0},  {74, 3},  {63, 1}, {59, 3}, {57, 3},
     {109, 0}, {108, 0}, {100, 5}, {93, 1},  {95, 0},  {92, 0},  {77, 1}, {79, 0}, {78, 0},
     {117, 4}, {118, 5}, {114, 5}, {106, 1}, {109, 0}, {108, 0}, {90, 1}, {93, 1}, {95, 0}},
    {{90, 0},  {77, 0},  {63, 0}, {80, 0},  {68, 0},  {56, 3}, {72, 1},  {60, 3}, {46, 3},
     {106, 0}, {93, 0},  {79, 5}, {99, 1},  {90, 0},  {77, 0}, {88, 1},  {80, 0}, {68, 0},
     {117, 3}, {109, 5}, {95, 5}, {113, 1}, {106, 0}, {93, 0}, {105, 1}, {99, 1}, {90, 0}},
    {{105, 0}, {88, 0},  {72, 0}, {103, 0}, {91, 0},  {73, 3}, {97, 1},  {89, 3},  {71, 3},
     {113, 0}, {99, 0},  {80, 5}, {116, 1}, {105, 0}, {88, 0}, {111, 1}, {103, 0}, {91, 0},
     {117, 2}, {106, 5}, {90, 5}, {121, 1}, {113, 0}, {99, 0}, {119, 1}, {116, 1}, {105, 0}},
    {{119, 0}, {111, 0}, {97, 0},  {115, 0}, {110, 0}, {98, 3},  {107, 1}, {104, 3}, {96, 3},
     {121, 0}, {116, 0}, {103, 5}, {120, 1}, {119, 0}, {111, 0}, {112, 1}, {115, 0}, {110, 0},
     {117, 1}, {113, 5}, {105, 5}, {118, 1}, {121, 0}, {116, 0}, {114, 1}, {120, 1}, {119, 0}},
    {{114, 0}, {112, 0}, {107, 0}, {100, 0}, {102, 0}, {101, 3}, {83, 1}, {87, 3},  {85, 3},
     {118, 0}, {120, 0}, {115, 5}, {108, 1}, {114, 0}, {112, 0}, {92, 1}, {100, 0}, {102, 0},
     {117, 0}, {121, 5}, {119, 5}, {109, 1}, {118, 0}, {120, 0}, {95, 1}, {108, 1}, {114, 0}},
};

/// Each base cell's home face and res-0 IJK position on it, whether it is a pentagon, and
/// for pentagons the faces (if any) from which entering it needs a clockwise rather than
/// counter-clockwise rotation out of the deleted k sub-sequence (-1: none).
struct BaseCellData {
  FaceIjk home;
  bool pentagon;
  int cw_offset_face[2];
};

constexpr BaseCellData kBaseCellData[kNumBaseCells] = {
    {{1, {1, 0, 0}}, false, {0, 0}},  {{2, {1, 1, 0}}, false, {0, 0}},
    {{1, {0, 0, 0}}, false, {0, 0}},  {{2, {1, 0, 0}}, false, {0, 0}},
    {{0, {2, 0, 0}}, true, {-1, -1}}, {{1, {1, 1, 0}}, false, {0, 0}},
    {{1, {0, 0, 1}}, false, {0, 0}},  {{2, {0, 0, 0}}, false, {0, 0}},
    {{0, {1, 0, 0}}, false, {0, 0}},  {{2, {0, 1, 0}}, false, {0, 0}},
    {{1, {0, 1, 0}}, false, {0, 0}},  {{1, {0, 1, 1}}, false, {0, 0}},
    {{3, {1, 0, 0}}, false, {0, 0}},  {{3, {1, 1, 0}}, false, {0, 0}},
    {{11, {2, 0, 0}}, true, {2, 6}},  {{4, {1, 0, 0}}, false, {0, 0}},
    {{0, {0, 0, 0}}, false, {0, 0}},  {{6, {0, 1, 0}}, false, {0, 0}},
    {{0, {0, 0, 1}}, false, {0, 0}},  {{2, {0, 1, 1}}, false, {0, 0}},
    {{7, {0, 0, 1}}, false, {0, 0}},  {{2, {0, 0, 1}}, false, {0, 0}},
    {{0, {1, 1, 0}}, false, {0, 0}},  {{6, {0, 0, 1}}, false, {0, 0}},
    {{10, {2, 0, 0}}, true, {1, 5}},  {{6, {0, 0, 0}}, false, {0, 0}},
    {{3, {0, 0, 0}}, false, {0, 0}},  {{11, {1, 0, 0}}, false, {0, 0}},
    {{4, {1, 1, 0}}, false, {0, 0}},  {{3, {0, 1, 0}}, false, {0, 0}},
    {{0, {0, 1, 1}}, false, {0, 0}},  {{4, {0, 0, 0}}, false, {0, 0}},
    {{5, {0, 1, 0}}, false, {0, 0}},  {{0, {0, 1, 0}}, false, {0, 0}},
    {{7, {0, 1, 0}}, false, {0, 0}},  {{11, {1, 1, 0}}, false, {0, 0}},
    {{7, {0, 0, 0}}, false, {0, 0}},  {{10, {1, 0, 0}}, false, {0, 0}},
    {{12, {2, 0, 0}}, true, {3, 7}},  {{6, {1, 0, 1}}, false, {0, 0}},
    {{7, {1, 0, 1}}, false, {0, 0}},  {{4, {0, 0, 1}}, false, {0, 0}},
    {{3, {0, 0, 1}}, false, {0, 0}},  {{3, {0, 1, 1}}, false, {0, 0}},
    {{4, {0, 1, 0}}, false, {0, 0}},  {{6, {1, 0, 0}}, false, {0, 0}},
    {{11, {0, 0, 0}}, false, {0, 0}}, {{8, {0, 0, 1}}, false, {0, 0}},
    {{5, {0, 0, 1}}, false, {0, 0}},  {{14, {2, 0, 0}}, true, {0, 9}},
    {{5, {0, 0, 0}}, false, {0, 0}},  {{12, {1, 0, 0}}, false, {0, 0}},
    {{10, {1, 1, 0}}, false, {0, 0}}, {{4, {0, 1, 1}}, false, {0, 0}},
    {{12, {1, 1, 0}}, false, {0, 0}}, {{7, {1, 0, 0}}, false, {0, 0}},
    {{11, {0, 1, 0}}, false, {0, 0}}, {{10, {0, 0, 0}}, false, {0, 0}},
    {{13, {2, 0, 0}}, true, {4, 8}},  {{10, {0, 0, 1}}, false, {0, 0}},
    {{11, {0, 0, 1}}, false, {0, 0}}, {{9, {0, 1, 0}}, false, {0, 0}},
    {{8, {0, 1, 0}}, false, {0, 0}},  {{6, {2, 0, 0}}, true, {11, 15}},
    {{8, {0, 0, 0}}, false, {0, 0}},  {{9, {0, 0, 1}}, false, {0, 0}},
    {{14, {1, 0, 0}}, false, {0, 0}}, {{5, {1, 0, 1}}, false, {0, 0}},
    {{16, {0, 1, 1}}, false, {0, 0}}, {{8, {1, 0, 1}}, false, {0, 0}},
    {{5, {1, 0, 0}}, false, {0, 0}},  {{12, {0, 0, 0}}, false, {0, 0}},
    {{7, {2, 0, 0}}, true, {12, 16}}, {{12, {0, 1, 0}}, false, {0, 0}},
    {{10, {0, 1, 0}}, false, {0, 0}}, {{9, {0, 0, 0}}, false, {0, 0}},
    {{13, {1, 0, 0}}, false, {0, 0}}, {{16, {0, 0, 1}}, false, {0, 0}},
    {{15, {0, 1, 1}}, false, {0, 0}}, {{15, {0, 1, 0}}, false, {0, 0}},
    {{16, {0, 1, 0}}, false, {0, 0}}, {{14, {1, 1, 0}}, false, {0, 0}},
    {{13, {1, 1, 0}}, false, {0, 0}}, {{5, {2, 0, 0}}, true, {10, 19}},
    {{8, {1, 0, 0}}, false, {0, 0}},  {{14, {0, 0, 0}}, false, {0, 0}},
    {{9, {1, 0, 1}}, false, {0, 0}},  {{14, {0, 0, 1}}, false, {0, 0}},
    {{17, {0, 0, 1}}, false, {0, 0}}, {{12, {0, 0, 1}}, false, {0, 0}},
    {{16, {0, 0, 0}}, false, {0, 0}}, {{17, {0, 1, 1}}, false, {0, 0}},
    {{15, {0, 0, 1}}, false, {0, 0}}, {{16, {1, 0, 1}}, false, {0, 0}},
    {{9, {1, 0, 0}}, false, {0, 0}},  {{15, {0, 0, 0}}, false, {0, 0}},
    {{13, {0, 0, 0}}, false, {0, 0}}, {{8, {2, 0, 0}}, true, {13, 17}},
    {{13, {0, 1, 0}}, false, {0, 0}}, {{17, {1, 0, 1}}, false, {0, 0}},
    {{19, {0, 1, 0}}, false, {0, 0}}, {{14, {0, 1, 0}}, false, {0, 0}},
    {{19, {0, 1, 1}}, false, {0, 0}}, {{17, {0, 1, 0}}, false, {0, 0}},
    {{13, {0, 0, 1}}, false, {0, 0}}, {{17, {0, 0, 0}}, false, {0, 0}},
    {{16, {1, 0, 0}}, false, {0, 0}}, {{9, {2, 0, 0}}, true, {14, 18}},
    {{15, {1, 0, 1}}, false, {0, 0}}, {{15, {1, 0, 0}}, false, {0, 0}},
    {{18, {0, 1, 1}}, false, {0, 0}}, {{18, {0, 0, 1}}, false, {0, 0}},
    {{19, {0, 0, 1}}, false, {0, 0}}, {{17, {1, 0, 0}}, false, {0, 0}},
    {{19, {0, 0, 0}}, false, {0, 0}}, {{18, {0, 1, 0}}, false, {0, 0}},
    {{18, {1, 0, 1}}, false, {0, 0}}, {{19, {2, 0, 0}}, true, {-1, -1}},
    {{19, {1, 0, 0}}, false, {0, 0}}, {{18, {0, 0, 0}}, false, {0, 0}},
    {{19, {1, 0, 1}}, false, {0, 0}}, {{18, {1, 0, 0}}, false, {0, 0}},
};

/// The base cell next to each base cell in each digit direction (127: none, the deleted
/// k direction of a pentagon).
constexpr uint8_t kBaseCellNeighbors[kNumBaseCells][7] = {
    {0, 1, 5, 2, 4, 3, 8},
    {1, 7, 6, 9, 0, 3, 2},
    {2, 6, 10, 11, 0, 1, 5},
    {3, 13, 1, 7, 4, 12, 0},
    {4, 127, 15, 8, 3, 0, 12},
    {5, 2, 18, 10, 8, 0, 16},
    {6, 14, 11, 17, 1, 9, 2},
    {7, 21, 9, 19, 3, 13, 1},
    {8, 5, 22, 16, 4, 0, 15},
    {9, 19, 14, 20, 1, 7, 6},
    {10, 11, 24, 23, 5, 2, 18},
    {11, 17, 23, 25, 2, 6, 10},
    {12, 28, 13, 26, 4, 15, 3},
    {13, 26, 21, 29, 3, 12, 7},
    {14, 127, 17, 27, 9, 20, 6},
    {15, 22, 28, 31, 4, 8, 12},
    {16, 18, 33, 30, 8, 5, 22},
    {17, 11, 14, 6, 35, 25, 27},
    {18, 24, 30, 32, 5, 10, 16},
    {19, 34, 20, 36, 7, 21, 9},
    {20, 14, 19, 9, 40, 27, 36},
    {21, 38, 19, 34, 13, 29, 7},
    {22, 16, 41, 33, 15, 8, 31},
    {23, 24, 11, 10, 39, 37, 25},
    {24, 127, 32, 37, 10, 23, 18},
    {25, 23, 17, 11, 45, 39, 35},
    {26, 42, 29, 43, 12, 28, 13},
    {27, 40, 35, 46, 14, 20, 17},
    {28, 31, 42, 44, 12, 15, 26},
    {29, 43, 38, 47, 13, 26, 21},
    {30, 32, 48, 50, 16, 18, 33},
    {31, 41, 44, 53, 15, 22, 28},
    {32, 30, 24, 18, 52, 50, 37},
    {33, 30, 49, 48, 22, 16, 41},
    {34, 19, 38, 21, 54, 36, 51},
    {35, 46, 45, 56, 17, 27, 25},
    {36, 20, 34, 19, 55, 40, 54},
    {37, 39, 52, 57, 24, 23, 32},
    {38, 127, 34, 51, 29, 47, 21},
    {39, 37, 25, 23, 59, 57, 45},
    {40, 27, 36, 20, 60, 46, 55},
    {41, 49, 53, 61, 22, 33, 31},
    {42, 58, 43, 62, 28, 44, 26},
    {43, 62, 47, 64, 26, 42, 29},
    {44, 53, 58, 65, 28, 31, 42},
    {45, 39, 35, 25, 63, 59, 56},
    {46, 60, 56, 68, 27, 40, 35},
    {47, 38, 43, 29, 69, 51, 64},
    {48, 49, 30, 33, 67, 66, 50},
    {49, 127, 61, 66, 33, 48, 41},
    {50, 48, 32, 30, 70, 67, 52},
    {51, 69, 54, 71, 38, 47, 34},
    {52, 57, 70, 74, 32, 37, 50},
    {53, 61, 65, 75, 31, 41, 44},
    {54, 71, 55, 73, 34, 51, 36},
    {55, 40, 54, 36, 72, 60, 73},
    {56, 68, 63, 77, 35, 46, 45},
    {57, 59, 74, 78, 37, 39, 52},
    {58, 127, 62, 76, 44, 65, 42},
    {59, 63, 78, 79, 39, 45, 57},
    {60, 72, 68, 80, 40, 55, 46},
    {61, 53, 49, 41, 81, 75, 66},
    {62, 43, 58, 42, 82, 64, 76},
    {63, 127, 56, 45, 79, 59, 77},
    {64, 47, 62, 43, 84, 69, 82},
    {65, 58, 53, 44, 86, 76, 75},
    {66, 67, 81, 85, 49, 48, 61},
    {67, 66, 50, 48, 87, 85, 70},
    {68, 56, 60, 46, 90, 77, 80},
    {69, 51, 64, 47, 89, 71, 84},
    {70, 67, 52, 50, 83, 87, 74},
    {71, 89, 73, 91, 51, 69, 54},
    {72, 127, 73, 55, 80, 60, 88},
    {73, 91, 72, 88, 54, 71, 55},
    {74, 78, 83, 92, 52, 57, 70},
    {75, 65, 61, 53, 94, 86, 81},
    {76, 86, 82, 96, 58, 65, 62},
    {77, 63, 68, 56, 93, 79, 90},
    {78, 74, 59, 57, 95, 92, 79},
    {79, 78, 63, 59, 93, 95, 77},
    {80, 68, 72, 60, 99, 90, 88},
    {81, 85, 94, 101, 61, 66, 75},
    {82, 96, 84, 98, 62, 76, 64},
    {83, 127, 74, 70, 100, 87, 92},
    {84, 69, 82, 64, 97, 89, 98},
    {85, 87, 101, 102, 66, 67, 81},
    {86, 76, 75, 65, 104, 96, 94},
    {87, 83, 102, 100, 67, 70, 85},
    {88, 72, 91, 73, 99, 80, 105},
    {89, 97, 91, 103, 69, 84, 71},
    {90, 77, 80, 68, 106, 93, 99},
    {91, 73, 89, 71, 105, 88, 103},
    {92, 83, 78, 74, 108, 100, 95},
    {93, 79, 90, 77, 109, 95, 106},
    {94, 86, 81, 75, 107, 104, 101},
    {95, 92, 79, 78, 109, 108, 93},
    {96, 104, 98, 110, 76, 86, 82},
    {97, 127, 98, 84, 103, 89, 111},
    {98, 110, 97, 111, 82, 96, 84},
    {99, 80, 105, 88, 106, 90, 113},
    {100, 102, 83, 87, 108, 114, 92},
    {101, 102, 107, 112, 81, 85, 94},
    {102, 101, 87, 85, 114, 112, 100},
    {103, 91, 97, 89, 116, 105, 111},
    {104, 107, 110, 115, 86, 94, 96},
    {105, 88, 103, 91, 113, 99, 116},
    {106, 93, 99, 90, 117, 109, 113},
    {107, 127, 101, 94, 115, 104, 112},
    {108, 100, 95, 92, 118, 114, 109},
    {109, 108, 93, 95, 117, 118, 106},
    {110, 98, 104, 96, 119, 111, 115},
    {111, 97, 110, 98, 116, 103, 119},
    {112, 107, 102, 101, 120, 115, 114},
    {113, 99, 116, 105, 117, 106, 121},
    {114, 112, 100, 102, 118, 120, 108},
    {115, 110, 107, 104, 120, 119, 112},
    {116, 103, 119, 111, 113, 105, 121},
    {117, 127, 109, 118, 113, 121, 106},
    {118, 120, 108, 114, 117, 121, 109},
    {119, 111, 115, 110, 121, 116, 120},
    {120, 115, 114, 112, 121, 119, 118},
    {121, 116, 120, 119, 117, 113, 118},
};

/// 60-degree counter-clockwise rotations into the coordinate system of each neighbour in
/// kBaseCellNeighbors (-1: no neighbour).
constexpr int8_t kBaseCellNeighborRots[kNumBaseCells][7] = {
    {0, 5, 0, 0, 1, 5, 1},  {0, 0, 1, 0, 1, 0, 1},  {0, 0, 0, 0, 0, 5, 0},  {0, 5, 0, 0, 2, 5, 1},
    {0, -1, 1, 0, 3, 4, 2}, {0, 0, 1, 0, 1, 0, 1},  {0, 0, 0, 3, 5, 5, 0},  {0, 0, 0, 0, 0, 5, 0},
    {0, 5, 0, 0, 0, 5, 1},  {0, 0, 1, 3, 0, 0, 1},  {0, 0, 1, 3, 0, 0, 1},  {0, 3, 3, 3, 0, 0, 0},
    {0, 5, 0, 0, 3, 5, 1},  {0, 0, 1, 0, 1, 0, 1},  {0, -1, 3, 0, 5, 2, 0}, {0, 5, 0, 0, 4, 5, 1},
    {0, 0, 0, 0, 0, 5, 0},  {0, 3, 3, 3, 3, 0, 3},  {0, 0, 0, 3, 5, 5, 0},  {0, 3, 3, 3, 0, 0, 0},
    {0, 3, 3, 3, 0, 3, 0},  {0, 0, 0, 3, 5, 5, 0},  {0, 0, 1, 0, 1, 0, 1},  {0, 3, 3, 3, 0, 3, 0},
    {0, -1, 3, 0, 5, 2, 0}, {0, 0, 0, 3, 0, 0, 3},  {0, 0, 0, 0, 0, 5, 0},  {0, 3, 0, 0, 0, 3, 3},
    {0, 0, 1, 0, 1, 0, 1},  {0, 0, 1, 3, 0, 0, 1},  {0, 3, 3, 3, 0, 0, 0},  {0, 0, 0, 0, 0, 5, 0},
    {0, 3, 3, 3, 3, 0, 3},  {0, 0, 1, 3, 0, 0, 1},  {0, 3, 3, 3, 3, 0, 3},  {0, 0, 3, 0, 3, 0, 3},
    {0, 0, 0, 3, 0, 0, 3},  {0, 3, 0, 0, 0, 3, 3},  {0, -1, 3, 0, 5, 2, 0}, {0, 3, 0, 0, 3, 3, 0},
    {0, 3, 0, 0, 3, 3, 0},  {0, 0, 0, 3, 5, 5, 0},  {0, 0, 0, 3, 5, 5, 0},  {0, 3, 3, 3, 0, 0, 0},
    {0, 0, 1, 3, 0, 0, 1},  {0, 0, 3, 0, 0, 3, 3},  {0, 0, 0, 3, 0, 3, 0},  {0, 3, 3, 3, 0, 3, 0},
    {0, 3, 3, 3, 0, 3, 0},  {0, -1, 3, 0, 5, 2, 0}, {0, 0, 0, 3, 0, 0, 3},  {0, 3, 0, 0, 0, 3, 3},
    {0, 0, 3, 0, 3, 0, 3},  {0, 3, 3, 3, 0, 0, 0},  {0, 0, 3, 0, 3, 0, 3},  {0, 0, 3, 0, 0, 3, 3},
    {0, 3, 3, 3, 0, 0, 3},  {0, 0, 0, 3, 0, 3, 0},  {0, -1, 3, 0, 5, 2, 0}, {0, 3, 3, 3, 3, 3, 0},
    {0, 3, 3, 3, 3, 3, 0},  {0, 3, 3, 3, 3, 0, 3},  {0, 3, 3, 3, 3, 0, 3},  {0, -1, 3, 0, 5, 2, 0},
    {0, 0, 0, 3, 0, 0, 3},  {0, 3, 3, 3, 0, 3, 0},  {0, 3, 0, 0, 0, 3, 3},  {0, 3, 0, 0, 3, 3, 0},
    {0, 3, 3, 3, 0, 0, 0},  {0, 3, 0, 0, 3, 3, 0},  {0, 0, 3, 0, 0, 3, 3},  {0, 0, 0, 3, 0, 3, 0},
    {0, -1, 3, 0, 5, 2, 0}, {0, 3, 3, 3, 0, 0, 3},  {0, 3, 3, 3, 0, 0, 3},  {0, 0, 0, 3, 0, 0, 3},
    {0, 3, 0, 0, 0, 3, 3},  {0, 0, 0, 3, 0, 5, 0},  {0, 3, 3, 3, 0, 0, 0},  {0, 0, 1, 3, 1, 0, 1},
    {0, 0, 1, 3, 1, 0, 1},  {0, 0, 3, 0, 3, 0, 3},  {0, 0, 3, 0, 3, 0, 3},  {0, -1, 3, 0, 5, 2, 0},
    {0, 0, 3, 0, 0, 3, 3},  {0, 0, 0, 3, 0, 3, 0},  {0, 3, 0, 0, 3, 3, 0},  {0, 3, 3, 3, 3, 3, 0},
    {0, 0, 0, 3, 0, 5, 0},  {0, 3, 3, 3, 3, 3, 0},  {0, 0, 0, 0, 0, 0, 1},  {0, 3, 3, 3, 0, 0, 0},
    {0, 0, 0, 3, 0, 5, 0},  {0, 5, 0, 0, 5, 5, 0},  {0, 0, 3, 0, 0, 3, 3},  {0, 0, 0, 0, 0, 0, 1},
    {0, 0, 0, 3, 0, 3, 0},  {0, -1, 3, 0, 5, 2, 0}, {0, 3, 3, 3, 0, 0, 3},  {0, 5, 0, 0, 5, 5, 0},
    {0, 0, 1, 3, 1, 0, 1},  {0, 3, 3, 3, 0, 0, 3},  {0, 3, 3, 3, 0, 0, 0},  {0, 0, 1, 3, 1, 0, 1},
    {0, 3, 3, 3, 3, 3, 0},  {0, 0, 0, 0, 0, 0, 1},  {0, 0, 1, 0, 3, 5, 1},  {0, -1, 3, 0, 5, 2, 0},
    {0, 5, 0, 0, 5, 5, 0},  {0, 0, 1, 0, 4, 5, 1},  {0, 3, 3, 3, 0, 0, 0},  {0, 0, 0, 3, 0, 5, 0},
    {0, 0, 0, 3, 0, 5, 0},  {0, 0, 1, 0, 2, 5, 1},  {0, 0, 0, 0, 0, 0, 1},  {0, 0, 1, 3, 1, 0, 1},
    {0, 5, 0, 0, 5, 5, 0},  {0, -1, 1, 0, 3, 4, 2}, {0, 0, 1, 0, 0, 5, 1},  {0, 0, 0, 0, 0, 0, 1},
    {0, 5, 0, 0, 5, 5, 0},  {0, 0, 1, 0, 1, 5, 1},
};

/// Largest IJK sum inside a face, and the res-0 unit in grid steps, per Class II
/// resolution (odd entries unused: Class III work is done one resolution finer).
constexpr int kMaxDimByCIIRes[17] = {2,  -1,    14, -1,     98, -1,      686, -1,      4802,
                                     -1, 33614, -1, 235298, -1, 1647086, -1,  11529602};
constexpr int kUnitScaleByCIIRes[17] = {1,  -1,    7,  -1,     49, -1,     343, -1,     2401,
                                        -1, 16807, -1, 117649, -1, 823543, -1,  5764801};

constexpr Ijk kDigitUnit[7] = {{0, 0, 0}, {0, 0, 1}, {0, 1, 0}, {0, 1, 1},
                               {1, 0, 0}, {1, 0, 1}, {1, 1, 0}};
constexpr int kRotateDigitCcw[8] = {kCenter, kIK, kJK, kK, kIJ, kI, kJ, kInvalidDigit};
constexpr int kRotateDigitCw[8] = {kCenter, kJK, kIJ, kJ, kIK, kK, kI, kInvalidDigit};

// ---------------------------------------------------------------------------------------
// IJK arithmetic.

inline bool IsClassIII(int res) {
  return (res & 1) != 0;
}

inline Ijk Add(Ijk a, Ijk b) {
  return {a.i + b.i, a.j + b.j, a.k + b.k};
}
inline Ijk Sub(Ijk a, Ijk b) {
  return {a.i - b.i, a.j - b.j, a.k - b.k};
}
inline Ijk Scale(Ijk a, int f) {
  return {a.i * f, a.j * f, a.k * f};
}

/// Bring to the canonical form: non-negative components, at least one of them zero.
inline void Normalize(Ijk& c) {
  if (c.i < 0) {
    c.j -= c.i;
    c.k -= c.i;
    c.i = 0;
  }
  if (c.j < 0) {
    c.i -= c.j;
    c.k -= c.j;
    c.j = 0;
  }
  if (c.k < 0) {
    c.i -= c.k;
    c.j -= c.k;
    c.k = 0;
  }
  int m = std::min({c.i, c.j, c.k});
  if (m > 0) {
    c.i -= m;
    c.j -= m;
    c.k -= m;
  }
}

/// Combine the three axis images of a linear map: result = i*iv + j*jv + k*kv.
inline Ijk Map(Ijk c, Ijk iv, Ijk jv, Ijk kv) {
  Ijk r = Add(Add(Scale(iv, c.i), Scale(jv, c.j)), Scale(kv, c.k));
  Normalize(r);
  return r;
}

inline Ijk Rotate60Ccw(Ijk c) {
  return Map(c, {1, 1, 0}, {0, 1, 1}, {1, 0, 1});
}
inline Ijk Rotate60Cw(Ijk c) {
  return Map(c, {1, 0, 1}, {1, 1, 0}, {0, 1, 1});
}
/// The same cell expressed one resolution finer (counter-clockwise aperture 7: the step
/// from a Class II resolution to the Class III one below it).
inline Ijk DownAp7(Ijk c) {
  return Map(c, {3, 0, 1}, {1, 3, 0}, {0, 1, 3});
}
/// Clockwise aperture 7: from Class III down to Class II.
inline Ijk DownAp7r(Ijk c) {
  return Map(c, {3, 1, 0}, {0, 3, 1}, {1, 0, 3});
}
/// Aperture 3 substrate grids, used to reach cell vertices.
inline Ijk DownAp3(Ijk c) {
  return Map(c, {2, 0, 1}, {1, 2, 0}, {0, 1, 2});
}
inline Ijk DownAp3r(Ijk c) {
  return Map(c, {2, 1, 0}, {0, 2, 1}, {1, 0, 2});
}

/// n / 7 rounded to the nearest integer; n / 7 is never halfway between two integers.
inline int DivRound7(int n) {
  return n >= 0 ? (n + 3) / 7 : -((3 - n) / 7);
}

/// floor(n / 7) for |n| < 2^28 (grid coordinates stay below 2^25), without branches.
inline int FloorDiv7(int n) {
  constexpr uint32_t kBias = uint32_t{7} << 26;
  return static_cast<int>((static_cast<uint32_t>(n) + kBias) / 7u) - (1 << 26);
}

/// Digit of an axial unit offset (da, db), indexed [(da + 1) * 3 + (db + 1)].
constexpr int kAxialDigit[9] = {kK, kJK, kInvalidDigit, kIK, kCenter, kJ, kInvalidDigit, kI, kIJ};

/// The parent cell one resolution coarser (inverse of DownAp7, rounded to the nearest
/// cell).
inline Ijk UpAp7(Ijk c) {
  int i = c.i - c.k;
  int j = c.j - c.k;
  Ijk r{DivRound7(3 * i - j), DivRound7(i + 2 * j), 0};
  Normalize(r);
  return r;
}
inline Ijk UpAp7r(Ijk c) {
  int i = c.i - c.k;
  int j = c.j - c.k;
  Ijk r{DivRound7(2 * i + j), DivRound7(3 * j - i), 0};
  Normalize(r);
  return r;
}

/// The digit of a normalized unit vector, or kInvalidDigit.
inline int UnitToDigit(Ijk c) {
  if (c.i > 1 || c.j > 1 || c.k > 1) return kInvalidDigit;
  return c.i * 4 + c.j * 2 + c.k;  // kDigitUnit is in binary order
}

inline Ijk Neighbor(Ijk c, int digit) {
  if (digit > kCenter && digit < kInvalidDigit) {
    c = Add(c, kDigitUnit[digit]);
    Normalize(c);
  }
  return c;
}

/// Centre of a cell in the face's 2D plane, in units of the cell spacing.
inline Vec2 IjkToHex2d(Ijk c) {
  int i = c.i - c.k;
  int j = c.j - c.k;
  return {i - 0.5 * j, j * kSqrt3Over2};
}

/// The cell of a face-plane point (quantization to the nearest hexagon centre).
Ijk Hex2dToIjk(Vec2 v) {
  double a1 = std::fabs(v.x);
  double a2 = std::fabs(v.y);
  double x2 = a2 * kInvSin60;
  double x1 = a1 + x2 / 2.0;
  int m1 = static_cast<int>(x1);
  int m2 = static_cast<int>(x2);
  double r1 = x1 - m1;
  double r2 = x2 - m2;
  Ijk h;
  if (r1 < 0.5) {
    if (r1 < 1.0 / 3.0) {
      h.i = m1;
      h.j = r2 < (1.0 + r1) / 2.0 ? m2 : m2 + 1;
    } else {
      h.j = r2 < (1.0 - r1) ? m2 : m2 + 1;
      h.i = ((1.0 - r1) <= r2 && r2 < (2.0 * r1)) ? m1 + 1 : m1;
    }
  } else {
    if (r1 < 2.0 / 3.0) {
      h.j = r2 < (1.0 - r1) ? m2 : m2 + 1;
      h.i = ((2.0 * r1 - 1.0) < r2 && r2 < (1.0 - r1)) ? m1 : m1 + 1;
    } else {
      h.i = m1 + 1;
      h.j = r2 < (r1 / 2.0) ? m2 : m2 + 1;
    }
  }
  // Fold back from the first quadrant into the quadrant of the point.
  if (v.x < 0.0) {
    if ((h.j % 2) == 0) {
      int axis_i = h.j / 2;
      h.i -= 2 * (h.i - axis_i);
    } else {
      int axis_i = (h.j + 1) / 2;
      h.i -= 2 * (h.i - axis_i) + 1;
    }
  }
  if (v.y < 0.0) {
    h.i -= (2 * h.j + 1) / 2;
    h.j = -h.j;
  }
  Normalize(h);
  return h;
}

// ---------------------------------------------------------------------------------------
// Index fields.

inline int Res(uint64_t h) {
  return static_cast<int>((h >> kResOffset) & 15);
}
inline int BaseCell(uint64_t h) {
  return static_cast<int>((h >> kBaseCellOffset) & 127);
}
inline int DigitShift(int r) {
  return (kMaxResolution - r) * kDigitBits;
}
inline int GetDigit(uint64_t h, int r) {
  return static_cast<int>((h >> DigitShift(r)) & kDigitMask);
}
inline uint64_t SetDigit(uint64_t h, int r, int d) {
  int s = DigitShift(r);
  return (h & ~(kDigitMask << s)) | (static_cast<uint64_t>(d) << s);
}
inline uint64_t SetRes(uint64_t h, int res) {
  return (h & ~(uint64_t{15} << kResOffset)) | (static_cast<uint64_t>(res) << kResOffset);
}
inline uint64_t SetBaseCell(uint64_t h, int bc) {
  return (h & ~(uint64_t{127} << kBaseCellOffset)) | (static_cast<uint64_t>(bc) << kBaseCellOffset);
}
inline bool IsBaseCellPentagon(int bc) {
  return kBaseCellData[bc].pentagon;
}
inline bool IsBaseCellPolarPentagon(int bc) {
  return bc == 4 || bc == 117;
}
inline bool IsCwOffset(int bc, int face) {
  return kBaseCellData[bc].cw_offset_face[0] == face || kBaseCellData[bc].cw_offset_face[1] == face;
}

inline int LeadingNonZeroDigit(uint64_t h) {
  int res = Res(h);
  for (int r = 1; r <= res; ++r) {
    int d = GetDigit(h, r);
    if (d != kCenter) return d;
  }
  return kCenter;
}

uint64_t RotateDigits(uint64_t h, const int (&table)[8]) {
  int res = Res(h);
  for (int r = 1; r <= res; ++r) h = SetDigit(h, r, table[GetDigit(h, r)]);
  return h;
}
inline uint64_t Rotate60Ccw(uint64_t h) {
  return RotateDigits(h, kRotateDigitCcw);
}
inline uint64_t Rotate60Cw(uint64_t h) {
  return RotateDigits(h, kRotateDigitCw);
}

/// Rotate a pentagon's digits, stepping over the deleted k sub-sequence: when the first
/// non-zero digit lands on k, rotate once more.
uint64_t RotatePent(uint64_t h, const int (&table)[8]) {
  int res = Res(h);
  bool found_first = false;
  for (int r = 1; r <= res; ++r) {
    h = SetDigit(h, r, table[GetDigit(h, r)]);
    if (!found_first && GetDigit(h, r) != kCenter) {
      found_first = true;
      if (LeadingNonZeroDigit(h) == kK) h = RotateDigits(h, table);
    }
  }
  return h;
}
inline uint64_t RotatePent60Ccw(uint64_t h) {
  return RotatePent(h, kRotateDigitCcw);
}

// ---------------------------------------------------------------------------------------
// Projection tables, derived once from the face data above.

/// For each face, the tangent-plane basis that turns a unit vector p into gnomonic face
/// coordinates: x = (p . e1) / (p . c), y = (p . e2) / (p . c), with e1 along the i axis
/// and e2 90 degrees counter-clockwise from it. Index [parity][face]; parity 1 is the
/// Class III orientation (rotated clockwise by kAp7RotRads).
struct FaceBasis {
  Vec3 center;
  Vec3 e1;
  Vec3 e2;
};

struct Tables {
  FaceBasis basis[2][kNumFaces];
  /// Grid units per gnomonic unit at each resolution: sqrt(7)^res / kRes0UGnomonic.
  double scale[kMaxResolution + 1];
  /// Neighbour traversal (see NeighborRotations): for a child digit and a move direction,
  /// the new child digit and the direction the parent must move in (kCenter: none).
  /// Index [child resolution is Class III][old digit][direction].
  int new_digit[2][7][7];
  int new_adjustment[2][7][7];
  /// Adjacent faces: the quadrant of face a that touches face b, or -1.
  int adjacent_face_dir[kNumFaces][kNumFaces];
};

Tables BuildTables() {
  Tables t{};
  for (int f = 0; f < kNumFaces; ++f) {
    const Geo& g = kFaceCenterGeo[f];
    Vec3 north{-std::sin(g.lat) * std::cos(g.lng), -std::sin(g.lat) * std::sin(g.lng),
               std::cos(g.lat)};
    Vec3 east{-std::sin(g.lng), std::cos(g.lng), 0.0};
    for (int parity = 0; parity < 2; ++parity) {
      // Theta (counter-clockwise from the i axis) = az_i - azimuth; the Class III grid is
      // turned so that theta_III = theta_II - rot, i.e. its i axis sits at az_i - rot.
      double az = kFaceAxisIAzimuth[f] - (parity == 1 ? kAp7RotRads : 0.0);
      double ca = std::cos(az);
      double sa = std::sin(az);
      FaceBasis& b = t.basis[parity][f];
      b.center = kFaceCenterPoint[f];
      b.e1 = {ca * north.x + sa * east.x, ca * north.y + sa * east.y, ca * north.z + sa * east.z};
      b.e2 = {sa * north.x - ca * east.x, sa * north.y - ca * east.y, sa * north.z - ca * east.z};
    }
  }
  double s = 1.0 / kRes0UGnomonic;
  for (int r = 0; r <= kMaxResolution; ++r) {
    t.scale[r] = s;
    s *= kSqrt7;
  }
  for (int parity = 0; parity < 2; ++parity) {
    for (int d = 0; d < 7; ++d) {
      for (int dir = 0; dir < 7; ++dir) {
        // A child at unit offset d from its parent's centre moves one step in dir; find
        // the parent it lands in (one resolution up) and its digit there.
        Ijk moved = Add(kDigitUnit[d], kDigitUnit[dir]);
        Normalize(moved);
        Ijk parent = parity == 1 ? UpAp7(moved) : UpAp7r(moved);
        Ijk center = parity == 1 ? DownAp7(parent) : DownAp7r(parent);
        Ijk offset = Sub(moved, center);
        Normalize(offset);
        t.new_digit[parity][d][dir] = UnitToDigit(offset);
        t.new_adjustment[parity][d][dir] = UnitToDigit(parent);
      }
    }
  }
  for (auto& row : t.adjacent_face_dir) std::fill(std::begin(row), std::end(row), -1);
  for (int f = 0; f < kNumFaces; ++f) {
    for (int q = 0; q < 4; ++q) t.adjacent_face_dir[f][kFaceNeighbors[f][q].face] = q;
  }
  return t;
}

const Tables& T() {
  static const Tables tables = BuildTables();
  return tables;
}

// ---------------------------------------------------------------------------------------
// Sphere helpers (radians).

double PosAngle(double a) {
  double t = a < 0 ? a + kTwoPi : a;
  if (a >= kTwoPi) t -= kTwoPi;
  return t;
}

double ConstrainLng(double lng) {
  while (lng > kPi) lng -= kTwoPi;
  while (lng < -kPi) lng += kTwoPi;
  return lng;
}

/// The point at `distance` (radians of arc) from p along azimuth `az`.
Geo AzDistance(const Geo& p, double az, double distance) {
  if (distance < kEpsilon) return p;
  Geo out;
  az = PosAngle(az);
  if (az < kEpsilon || std::fabs(az - kPi) < kEpsilon) {  // due north or south
    out.lat = az < kEpsilon ? p.lat + distance : p.lat - distance;
    if (std::fabs(out.lat - kHalfPi) < kEpsilon) return {kHalfPi, 0.0};
    if (std::fabs(out.lat + kHalfPi) < kEpsilon) return {-kHalfPi, 0.0};
    out.lng = ConstrainLng(p.lng);
    return out;
  }
  double sin_lat =
      std::sin(p.lat) * std::cos(distance) + std::cos(p.lat) * std::sin(distance) * std::cos(az);
  sin_lat = std::clamp(sin_lat, -1.0, 1.0);
  out.lat = std::asin(sin_lat);
  if (std::fabs(out.lat - kHalfPi) < kEpsilon) return {kHalfPi, 0.0};
  if (std::fabs(out.lat + kHalfPi) < kEpsilon) return {-kHalfPi, 0.0};
  double inv_cos_lat = 1.0 / std::cos(out.lat);
  double sin_lng = std::clamp(std::sin(az) * std::sin(distance) * inv_cos_lat, -1.0, 1.0);
  double cos_lng = std::clamp(
      (std::cos(distance) - std::sin(p.lat) * std::sin(out.lat)) / std::cos(p.lat) * inv_cos_lat,
      -1.0, 1.0);
  out.lng = ConstrainLng(p.lng + std::atan2(sin_lng, cos_lng));
  return out;
}

/// The sphere point of a face-plane position. `substrate` marks the finer vertex grids
/// (aperture 3, plus 7 in Class III) used for cell boundaries.
Geo Hex2dToGeo(Vec2 v, int face, int res, bool substrate) {
  double r = std::sqrt(v.x * v.x + v.y * v.y);
  if (r < kEpsilon) return kFaceCenterGeo[face];
  double theta = std::atan2(v.y, v.x);
  for (int i = 0; i < res; ++i) r /= kSqrt7;
  if (substrate) {
    r /= 3.0;
    if (IsClassIII(res)) r /= kSqrt7;
  }
  r *= kRes0UGnomonic;
  r = std::atan(r);  // inverse gnomonic
  if (!substrate && IsClassIII(res)) theta = PosAngle(theta + kAp7RotRads);
  theta = PosAngle(kFaceAxisIAzimuth[face] - theta);
  return AzDistance(kFaceCenterGeo[face], theta, r);
}

// ---------------------------------------------------------------------------------------
// Point to cell.

/// Face and face-plane position (grid units of `res`) of a unit vector.
inline void PointToHex2d(const Vec3& p, int res, int* face, Vec2* v) {
  int best = 0;
  double best_sqd = 5.0;  // squared chord lengths are at most 4
  for (int f = 0; f < kNumFaces; ++f) {
    const Vec3& c = kFaceCenterPoint[f];
    double dx = c.x - p.x;
    double dy = c.y - p.y;
    double dz = c.z - p.z;
    double sqd = dx * dx + dy * dy + dz * dz;
    if (sqd < best_sqd) {
      best = f;
      best_sqd = sqd;
    }
  }
  *face = best;
  // The arc from the face centre is taken from the chord, as the specification does
  // (cos r = 1 - chord^2 / 2), so that points very near a face centre, where this loses
  // precision, still land in the reference library's cell.
  // tan(acos(c)) = sqrt((1 - c)(1 + c)) / c, and 1 - c is exact for c in [0.5, 1].
  double cos_r = 1.0 - best_sqd / 2.0;
  if (cos_r >= 1.0) {  // r below 1e-16: the face centre itself
    *v = {0.0, 0.0};
    return;
  }
  double tan_r = std::sqrt((1.0 - cos_r) * (1.0 + cos_r)) / cos_r;
  const Tables& t = T();
  const FaceBasis& b = t.basis[res & 1][best];
  // Direction in the face plane, then the gnomonic radius tan(r) in grid units.
  double x = p.x * b.e1.x + p.y * b.e1.y + p.z * b.e1.z;
  double y = p.x * b.e2.x + p.y * b.e2.y + p.z * b.e2.z;
  double s = tan_r * t.scale[res] / std::sqrt(x * x + y * y);
  v->x = x * s;
  v->y = y * s;
}

/// Build the index of a cell given on a face. Returns kNullCell when the res-0 ancestor
/// falls outside the face's base cell table (cannot happen for a point's own face).
uint64_t FaceIjkToCell(const FaceIjk& fijk, int res) {
  uint64_t h = SetRes(kInitIndex, res);
  // Walk up from the cell, recording at each resolution the digit of the child within
  // its parent. Axial coordinates (a, b) = (i - k, j - k) keep this loop branch-light:
  // it runs once per resolution for every point.
  int a = fijk.c.i - fijk.c.k;
  int b = fijk.c.j - fijk.c.k;
  for (int r = res - 1; r >= 0; --r) {
    int la = a;
    int lb = b;
    int ca;
    int cb;
    if (IsClassIII(r + 1)) {  // UpAp7, then the parent's centre back down (DownAp7)
      a = FloorDiv7(3 * la - lb + 3);
      b = FloorDiv7(la + 2 * lb + 3);
      ca = 2 * a + b;
      cb = 3 * b - a;
    } else {  // UpAp7r / DownAp7r
      a = FloorDiv7(2 * la + lb + 3);
      b = FloorDiv7(3 * lb - la + 3);
      ca = 3 * a - b;
      cb = a + 2 * b;
    }
    h = SetDigit(h, r + 1, kAxialDigit[(la - ca + 1) * 3 + (lb - cb + 1)]);
  }
  Ijk ijk{a, b, 0};
  Normalize(ijk);
  if (ijk.i > kMaxFaceCoord || ijk.j > kMaxFaceCoord || ijk.k > kMaxFaceCoord) return kNullCell;
  const BaseCellOrient& o = kFaceIjkBaseCells[fijk.face][ijk.i * 9 + ijk.j * 3 + ijk.k];
  int bc = o.base_cell;
  h = SetBaseCell(h, bc);
  if (IsBaseCellPentagon(bc)) {
    // The k sub-sequence of a pentagon does not exist: a cell that would start with it
    // belongs to the neighbouring sub-sequence, on the side given by the face.
    if (LeadingNonZeroDigit(h) == kK) {
      h = IsCwOffset(bc, fijk.face) ? Rotate60Cw(h) : Rotate60Ccw(h);
    }
    for (int i = 0; i < o.ccw_rot60; ++i) h = RotatePent60Ccw(h);
  } else if (o.ccw_rot60 != 0) {
    // All rotations in one pass over the digits.
    int rot = o.ccw_rot60;
    for (int r = 1; r <= res; ++r) {
      int d = GetDigit(h, r);
      for (int i = 0; i < rot; ++i) d = kRotateDigitCcw[d];
      h = SetDigit(h, r, d);
    }
  }
  return h;
}

// ---------------------------------------------------------------------------------------
// Cell to face coordinates.

enum class Overage { kNone, kFaceEdge, kNewFace };

/// Move a Class II coordinate that has run past its face onto the neighbouring face.
Overage AdjustOverageClassII(FaceIjk& fijk, int res, bool pent_leading4, bool substrate) {
  Ijk& ijk = fijk.c;
  int max_dim = kMaxDimByCIIRes[res];
  if (substrate) max_dim *= 3;
  int sum = ijk.i + ijk.j + ijk.k;
  if (substrate && sum == max_dim) return Overage::kFaceEdge;
  if (sum <= max_dim) return Overage::kNone;
  const FaceOrient* orient;
  if (ijk.k > 0) {
    if (ijk.j > 0) {
      orient = &kFaceNeighbors[fijk.face][kFaceJK];
    } else {
      orient = &kFaceNeighbors[fijk.face][kFaceKI];
      if (pent_leading4) {
        // Rotate about the pentagon centre to step over the deleted sub-sequence.
        Ijk origin{max_dim, 0, 0};
        Ijk tmp = Sub(ijk, origin);
        Normalize(tmp);
        tmp = Rotate60Cw(tmp);
        ijk = Add(tmp, origin);
        Normalize(ijk);
      }
    }
  } else {
    orient = &kFaceNeighbors[fijk.face][kFaceIJ];
  }
  fijk.face = orient->face;
  for (int i = 0; i < orient->ccw_rot60; ++i) ijk = Rotate60Ccw(ijk);
  int unit_scale = kUnitScaleByCIIRes[res];
  if (substrate) unit_scale *= 3;
  ijk = Add(ijk, Scale(orient->translate, unit_scale));
  Normalize(ijk);
  if (substrate && ijk.i + ijk.j + ijk.k == max_dim) return Overage::kFaceEdge;
  return Overage::kNewFace;
}

/// Face coordinates of a valid cell, on the face that holds its centre.
FaceIjk CellToFaceIjk(uint64_t h) {
  int bc = BaseCell(h);
  if (IsBaseCellPentagon(bc) && LeadingNonZeroDigit(h) == kIK) h = Rotate60Cw(h);
  FaceIjk fijk = kBaseCellData[bc].home;
  int res = Res(h);
  // Descend from the base cell's home position along the digits.
  bool possible_overage =
      IsBaseCellPentagon(bc) || !(res == 0 || (fijk.c.i == 0 && fijk.c.j == 0 && fijk.c.k == 0));
  for (int r = 1; r <= res; ++r) {
    fijk.c = IsClassIII(r) ? DownAp7(fijk.c) : DownAp7r(fijk.c);
    fijk.c = Neighbor(fijk.c, GetDigit(h, r));
  }
  if (!possible_overage) return fijk;

  Ijk orig = fijk.c;
  int adj_res = res;
  if (IsClassIII(res)) {  // work in the Class II grid just below
    fijk.c = DownAp7r(fijk.c);
    adj_res++;
  }
  bool pent_leading4 = IsBaseCellPentagon(bc) && LeadingNonZeroDigit(h) == kI;
  if (AdjustOverageClassII(fijk, adj_res, pent_leading4, false) != Overage::kNone) {
    // A pentagon's cells can spill over two face edges.
    if (IsBaseCellPentagon(bc)) {
      while (AdjustOverageClassII(fijk, adj_res, false, false) != Overage::kNone) {
      }
    }
    if (adj_res != res) fijk.c = UpAp7r(fijk.c);
  } else if (adj_res != res) {
    fijk.c = orig;
  }
  return fijk;
}

Geo FaceIjkToGeo(const FaceIjk& fijk, int res) {
  return Hex2dToGeo(IjkToHex2d(fijk.c), fijk.face, res, false);
}

// ---------------------------------------------------------------------------------------
// Boundaries.

constexpr Ijk kVertsClassII[6] = {{2, 1, 0}, {1, 2, 0}, {0, 2, 1}, {0, 1, 2}, {1, 0, 2}, {2, 0, 1}};
constexpr Ijk kVertsClassIII[6] = {{5, 4, 0}, {1, 5, 0}, {0, 5, 4},
                                   {0, 1, 5}, {4, 0, 5}, {5, 0, 1}};

/// Vertices of a cell (first `n` of them) on the substrate grid; `res` becomes the
/// substrate's Class II resolution.
void CellVerts(FaceIjk center, int* res, int n, FaceIjk* out) {
  const Ijk* verts = IsClassIII(*res) ? kVertsClassIII : kVertsClassII;
  center.c = DownAp3r(DownAp3(center.c));
  if (IsClassIII(*res)) {
    center.c = DownAp7r(center.c);
    *res += 1;
  }
  for (int v = 0; v < n; ++v) {
    out[v].face = center.face;
    out[v].c = Add(center.c, verts[v]);
    Normalize(out[v].c);
  }
}

/// Where segment p0-p1 meets line p2-p3.
Vec2 Intersect(Vec2 p0, Vec2 p1, Vec2 p2, Vec2 p3) {
  Vec2 s1{p1.x - p0.x, p1.y - p0.y};
  Vec2 s2{p3.x - p2.x, p3.y - p2.y};
  double t = (s2.x * (p0.y - p2.y) - s2.y * (p0.x - p2.x)) / (-s2.x * s1.y + s1.x * s2.y);
  return {p0.x + t * s1.x, p0.y + t * s1.y};
}

bool AlmostEqual(Vec2 a, Vec2 b) {
  return std::fabs(a.x - b.x) < FLT_EPSILON && std::fabs(a.y - b.y) < FLT_EPSILON;
}

/// The icosahedron edge (in substrate units) on the `dir` side of a face.
void FaceEdge(int dir, int max_dim, Vec2* e0, Vec2* e1) {
  Vec2 v0{3.0 * max_dim, 0.0};
  Vec2 v1{-1.5 * max_dim, 3.0 * kSqrt3Over2 * max_dim};
  Vec2 v2{-1.5 * max_dim, -3.0 * kSqrt3Over2 * max_dim};
  switch (dir) {
    case kFaceIJ:
      *e0 = v0;
      *e1 = v1;
      break;
    case kFaceJK:
      *e0 = v1;
      *e1 = v2;
      break;
    default:  // kFaceKI
      *e0 = v2;
      *e1 = v0;
      break;
  }
}

void HexBoundary(const FaceIjk& center, int res, std::vector<Geo>* out) {
  int adj_res = res;
  FaceIjk verts[6];
  CellVerts(center, &adj_res, 6, verts);
  const Tables& t = T();
  int last_face = -1;
  Overage last_overage = Overage::kNone;
  // One extra step so that a crossing on the last edge is found.
  for (int vert = 0; vert < 7; ++vert) {
    int v = vert % 6;
    FaceIjk fijk = verts[v];
    Overage overage = AdjustOverageClassII(fijk, adj_res, false, true);
    // In Class III an edge can cross an icosahedron edge: add the crossing point, each
    // half being projected from its own face. (Class II vertices sit on the edges.)
    if (IsClassIII(res) && vert > 0 && fijk.face != last_face &&
        last_overage != Overage::kFaceEdge) {
      int last_v = (v + 5) % 6;
      Vec2 a = IjkToHex2d(verts[last_v].c);
      Vec2 b = IjkToHex2d(verts[v].c);
      int face2 = last_face == center.face ? fijk.face : last_face;
      Vec2 e0;
      Vec2 e1;
      FaceEdge(t.adjacent_face_dir[center.face][face2], kMaxDimByCIIRes[adj_res], &e0, &e1);
      Vec2 inter = Intersect(a, b, e0, e1);
      if (!AlmostEqual(a, inter) && !AlmostEqual(b, inter)) {
        out->push_back(Hex2dToGeo(inter, center.face, adj_res, true));
      }
    }
    if (vert < 6) out->push_back(Hex2dToGeo(IjkToHex2d(fijk.c), fijk.face, adj_res, true));
    last_face = fijk.face;
    last_overage = overage;
  }
}

void PentagonBoundary(const FaceIjk& center, int res, std::vector<Geo>* out) {
  int adj_res = res;
  FaceIjk verts[5];
  CellVerts(center, &adj_res, 5, verts);
  const Tables& t = T();
  FaceIjk last = verts[0];
  for (int vert = 0; vert < 6; ++vert) {
    int v = vert % 5;
    FaceIjk fijk = verts[v];
    while (AdjustOverageClassII(fijk, adj_res, false, true) == Overage::kNewFace) {
    }
    // Every Class III pentagon edge crosses an icosahedron edge.
    if (IsClassIII(res) && vert > 0) {
      FaceIjk tmp = fijk;
      Vec2 a = IjkToHex2d(last.c);
      int current_to_last = t.adjacent_face_dir[tmp.face][last.face];
      const FaceOrient& orient = kFaceNeighbors[tmp.face][current_to_last];
      tmp.face = orient.face;
      for (int i = 0; i < orient.ccw_rot60; ++i) tmp.c = Rotate60Ccw(tmp.c);
      tmp.c = Add(tmp.c, Scale(orient.translate, kUnitScaleByCIIRes[adj_res] * 3));
      Normalize(tmp.c);
      Vec2 b = IjkToHex2d(tmp.c);
      Vec2 e0;
      Vec2 e1;
      FaceEdge(t.adjacent_face_dir[tmp.face][fijk.face], kMaxDimByCIIRes[adj_res], &e0, &e1);
      out->push_back(Hex2dToGeo(Intersect(a, b, e0, e1), tmp.face, adj_res, true));
    }
    if (vert < 5) out->push_back(Hex2dToGeo(IjkToHex2d(fijk.c), fijk.face, adj_res, true));
    last = fijk;
  }
}

// ---------------------------------------------------------------------------------------
// Neighbours.

/// The neighbour of `origin` in digit direction `dir`, or kNullCell where the direction
/// is the deleted k axis of a pentagon. `rotations` tracks how many 60-degree
/// counter-clockwise turns the walk's frame has taken (in/out).
uint64_t NeighborRotations(uint64_t origin, int dir, int* rotations) {
  const Tables& t = T();
  uint64_t current = origin;
  *rotations %= 6;
  for (int i = 0; i < *rotations; ++i) dir = kRotateDigitCcw[dir];
  int new_rotations = 0;
  int old_bc = BaseCell(current);
  int old_leading = LeadingNonZeroDigit(current);
  // Carry the move up through the digits until a parent stays put or the base cell moves.
  for (int r = Res(current) - 1;; --r) {
    if (r == -1) {
      int nb = kBaseCellNeighbors[old_bc][dir];
      new_rotations = kBaseCellNeighborRots[old_bc][dir];
      if (nb == kInvalidBaseCell) {
        // The deleted k direction: this edge borders the IK neighbour instead.
        nb = kBaseCellNeighbors[old_bc][kIK];
        new_rotations = kBaseCellNeighborRots[old_bc][kIK];
        current = Rotate60Ccw(current);
        *rotations += 1;
      }
      current = SetBaseCell(current, nb);
      break;
    }
    int old_digit = GetDigit(current, r + 1);
    if (old_digit == kInvalidDigit) return kNullCell;
    int parity = IsClassIII(r + 1) ? 1 : 0;
    current = SetDigit(current, r + 1, t.new_digit[parity][old_digit][dir]);
    int next_dir = t.new_adjustment[parity][old_digit][dir];
    if (next_dir == kCenter) break;
    dir = next_dir;
  }
  int new_bc = BaseCell(current);
  if (IsBaseCellPentagon(new_bc)) {
    bool already_adjusted = false;
    if (LeadingNonZeroDigit(current) == kK) {
      if (old_bc != new_bc) {
        // Walked into the deleted sub-sequence from another base cell.
        current = IsCwOffset(new_bc, kBaseCellData[old_bc].home.face) ? Rotate60Cw(current)
                                                                      : Rotate60Ccw(current);
        already_adjusted = true;
      } else {
        // Walked into it from within the same pentagon.
        if (old_leading == kCenter) return kNullCell;  // the k direction does not exist
        if (old_leading == kJK) {
          current = Rotate60Ccw(current);
          *rotations += 1;
        } else if (old_leading == kIK) {
          current = Rotate60Cw(current);
          *rotations += 5;
        } else {
          return kNullCell;
        }
      }
    }
    for (int i = 0; i < new_rotations; ++i) current = RotatePent60Ccw(current);
    if (old_bc != new_bc) {
      if (IsBaseCellPolarPentagon(new_bc)) {
        // All neighbours of the polar pentagons face them with their i axis.
        if (old_bc != 118 && old_bc != 8 && LeadingNonZeroDigit(current) != kJK) *rotations += 1;
      } else if (LeadingNonZeroDigit(current) == kIK && !already_adjusted) {
        *rotations += 1;
      }
    }
  } else {
    for (int i = 0; i < new_rotations; ++i) current = Rotate60Ccw(current);
  }
  *rotations = (*rotations + new_rotations) % 6;
  return current;
}

// ---------------------------------------------------------------------------------------
// Area.

Vec3 ToVec3(const Geo& g) {
  double cos_lat = std::cos(g.lat);
  return {cos_lat * std::cos(g.lng), cos_lat * std::sin(g.lng), std::sin(g.lat)};
}

inline double Dot(const Vec3& a, const Vec3& b) {
  return a.x * b.x + a.y * b.y + a.z * b.z;
}

/// Signed area (spherical excess) of the triangle c, a, b on the unit sphere, positive
/// when counter-clockwise, by the Van Oosterom-Strackee formula. The triple product is
/// taken on the small edge vectors a - c and b - c, which keeps full relative precision
/// for tiny triangles (and near the poles, where longitude differences are large).
double TriangleExcess(const Vec3& c, const Vec3& a, const Vec3& b) {
  Vec3 u{a.x - c.x, a.y - c.y, a.z - c.z};
  Vec3 w{b.x - c.x, b.y - c.y, b.z - c.z};
  Vec3 cross{u.y * w.z - u.z * w.y, u.z * w.x - u.x * w.z, u.x * w.y - u.y * w.x};
  double triple = Dot(c, cross);
  double denom = 1.0 + Dot(c, a) + Dot(a, b) + Dot(b, c);
  return 2.0 * std::atan2(triple, denom);
}

Geo CellCenterRads(uint64_t cell) {
  return FaceIjkToGeo(CellToFaceIjk(cell), Res(cell));
}

std::vector<Geo> BoundaryRads(uint64_t cell) {
  std::vector<Geo> out;
  out.reserve(10);
  FaceIjk fijk = CellToFaceIjk(cell);
  if (IsPentagon(cell)) {
    PentagonBoundary(fijk, Res(cell), &out);
  } else {
    HexBoundary(fijk, Res(cell), &out);
  }
  return out;
}

void AppendChildren(uint64_t h, int child_res, std::vector<uint64_t>* out) {
  int res = Res(h);
  if (res == child_res) {
    out->push_back(h);
    return;
  }
  bool pentagon = IsPentagon(h);
  uint64_t base = SetRes(h, res + 1);
  for (int d = 0; d < 7; ++d) {
    if (pentagon && d == kK) continue;
    AppendChildren(SetDigit(base, res + 1, d), child_res, out);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Public API.

uint64_t LatLngToCell(double lat_deg, double lng_deg, int res) {
  if (res < 0 || res > kMaxResolution || !std::isfinite(lat_deg) || !std::isfinite(lng_deg) ||
      std::fabs(lat_deg) > 90.0) {
    return kNullCell;
  }
  double lat = lat_deg * kDegToRad;
  double lng = lng_deg * kDegToRad;
  double cos_lat = std::cos(lat);
  Vec3 p{cos_lat * std::cos(lng), cos_lat * std::sin(lng), std::sin(lat)};
  FaceIjk fijk;
  Vec2 v;
  PointToHex2d(p, res, &fijk.face, &v);
  fijk.c = Hex2dToIjk(v);
  return FaceIjkToCell(fijk, res);
}

LatLng CellToLatLng(uint64_t cell) {
  if (!IsValidCell(cell)) return {std::nan(""), std::nan("")};
  Geo g = CellCenterRads(cell);
  return {g.lat * kRadToDeg, g.lng * kRadToDeg};
}

std::vector<LatLng> CellToBoundary(uint64_t cell) {
  std::vector<LatLng> out;
  if (!IsValidCell(cell)) return out;
  for (const Geo& g : BoundaryRads(cell)) out.push_back({g.lat * kRadToDeg, g.lng * kRadToDeg});
  return out;
}

uint64_t CellToParent(uint64_t cell, int parent_res) {
  if (!IsValidCell(cell)) return kNullCell;
  int res = Res(cell);
  if (parent_res < 0 || parent_res > res) return kNullCell;
  uint64_t h = SetRes(cell, parent_res);
  for (int r = parent_res + 1; r <= res; ++r) h = SetDigit(h, r, kInvalidDigit);
  return h;
}

std::vector<uint64_t> CellToChildren(uint64_t cell, int child_res) {
  std::vector<uint64_t> out;
  if (!IsValidCell(cell) || child_res < Res(cell) || child_res > kMaxResolution ||
      child_res - Res(cell) > kMaxChildLevels) {
    return out;
  }
  AppendChildren(cell, child_res, &out);
  return out;
}

std::vector<uint64_t> GridDisk(uint64_t origin, int k) {
  std::vector<uint64_t> out;
  if (!IsValidCell(origin) || k < 0) return out;
  // Breadth-first over the six neighbours of each cell: correct around pentagons too.
  std::unordered_set<uint64_t> seen{origin};
  out.push_back(origin);
  size_t ring_begin = 0;
  for (int step = 0; step < k; ++step) {
    size_t ring_end = out.size();
    for (size_t n = ring_begin; n < ring_end; ++n) {
      for (int dir = kK; dir <= kIJ; ++dir) {
        int rotations = 0;
        uint64_t nb = NeighborRotations(out[n], dir, &rotations);
        if (nb != kNullCell && seen.insert(nb).second) out.push_back(nb);
      }
    }
    ring_begin = ring_end;
  }
  return out;
}

double CellAreaKm2(uint64_t cell) {
  if (!IsValidCell(cell)) return 0.0;
  // A fan of triangles from the centre, which every cell boundary is star-shaped around.
  Vec3 c = ToVec3(CellCenterRads(cell));
  std::vector<Geo> b = BoundaryRads(cell);
  double area = 0.0;
  Vec3 first = ToVec3(b[0]);
  Vec3 prev = first;
  for (size_t i = 1; i <= b.size(); ++i) {
    Vec3 next = i < b.size() ? ToVec3(b[i]) : first;
    area += TriangleExcess(c, prev, next);
    prev = next;
  }
  return area * kEarthRadiusKm * kEarthRadiusKm;
}

std::string CellToString(uint64_t cell) {
  char buf[17];
  int n = 0;
  int shift = 60;
  while (shift > 0 && ((cell >> shift) & 15) == 0) shift -= 4;
  for (; shift >= 0; shift -= 4) buf[n++] = "0123456789abcdef"[(cell >> shift) & 15];
  return std::string(buf, static_cast<size_t>(n));
}

uint64_t StringToCell(std::string_view text) {
  if (text.empty() || text.size() > 16) return kNullCell;
  uint64_t h = 0;
  for (char ch : text) {
    int d;
    if (ch >= '0' && ch <= '9') {
      d = ch - '0';
    } else if (ch >= 'a' && ch <= 'f') {
      d = ch - 'a' + 10;
    } else if (ch >= 'A' && ch <= 'F') {
      d = ch - 'A' + 10;
    } else {
      return kNullCell;
    }
    h = (h << 4) | static_cast<uint64_t>(d);
  }
  return IsValidCell(h) ? h : kNullCell;
}

bool IsValidCell(uint64_t cell) {
  if ((cell >> 63) != 0) return false;
  if (((cell >> kModeOffset) & 15) != kCellMode) return false;
  if (((cell >> 56) & 7) != 0) return false;  // mode-dependent bits are 0 for cells
  int bc = BaseCell(cell);
  if (bc >= kNumBaseCells) return false;
  int res = Res(cell);
  bool pentagon = IsBaseCellPentagon(bc);
  bool found_first = false;
  for (int r = 1; r <= kMaxResolution; ++r) {
    int d = GetDigit(cell, r);
    if (r > res) {
      if (d != kInvalidDigit) return false;
      continue;
    }
    if (d == kInvalidDigit) return false;
    if (!found_first && d != kCenter) {
      found_first = true;
      if (pentagon && d == kK) return false;  // deleted sub-sequence
    }
  }
  return true;
}

int GetResolution(uint64_t cell) {
  return Res(cell);
}

int GetBaseCell(uint64_t cell) {
  return BaseCell(cell);
}

bool IsPentagon(uint64_t cell) {
  int bc = BaseCell(cell);
  return bc < kNumBaseCells && IsBaseCellPentagon(bc) && LeadingNonZeroDigit(cell) == kCenter;
}

}  // namespace tributary::h3
