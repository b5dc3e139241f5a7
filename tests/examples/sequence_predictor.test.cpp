// The sequence predictor's data handling (examples/sequence_predictor/series.hpp) and its plot's
// axes (plot.hpp): gaps in a CSV file, the chunk layout on a short series, round tick values.
#include "sequence_predictor/plot.hpp"
#include "sequence_predictor/series.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace {

std::string writeCsv(const std::string& name, const std::string& text) {
  const std::string path = std::string(RECURRENT_TEST_SCRATCH_DIR) + "/" + name;
  std::ofstream(path) << text;
  return path;
}

const char* kGaps = "t,a,b\n0,1,10\n1,,11\n2,,NA\n3,7,13\n4,9,n/a\n";

}  // namespace

TEST_CASE("readCsvColumns reads the columns asked for, in that order", "[example]") {
  const std::string path = writeCsv("columns.csv", "t,a,b\n0,1.5,2\n\n1,-3,4e1\n");
  const auto v = example::readCsvColumns(path, {"b", "a"});
  REQUIRE(v.size() == 2);
  CHECK(v[0] == std::vector<double>{2, 40});
  CHECK(v[1] == std::vector<double>{1.5, -3});
  CHECK_THROWS_WITH(example::readCsvColumns(path, {"c"}),
                    Catch::Contains("no column 'c' in the header (it has 't', 'a', 'b')"));
}

TEST_CASE("a gap without --fill is an error naming the line, the column and --fill", "[example]") {
  const std::string path = writeCsv("gaps.csv", kGaps);
  CHECK_THROWS_WITH(example::readCsvColumns(path, {"a"}),
                    Catch::Contains("gaps.csv:3: column 'a' has a gap ('')") &&
                        Catch::Contains("--fill linear|previous|drop"));
  CHECK_THROWS_WITH(example::readCsvColumns(path, {"b"}),
                    Catch::Contains("gaps.csv:4: column 'b' has a gap ('NA')"));
  const std::string bad = writeCsv("bad.csv", "a\n1\nabc\n");
  CHECK_THROWS_WITH(example::readCsvColumns(bad, {"a"}, example::Fill::Linear),
                    Catch::Contains("bad.csv:3: column 'a' holds 'abc', not a finite number"));
}

TEST_CASE("gaps filled linearly, by the previous value, or dropped", "[example]") {
  const std::string path = writeCsv("gaps.csv", kGaps);
  const auto linear = example::readCsvColumns(path, {"a", "b"}, example::Fill::Linear);
  using Catch::Matchers::Approx;  // interpolation rounds: 1 + (7 - 1) / 3 is 2.9999…
  CHECK_THAT(linear[0], Approx(std::vector<double>{1, 3, 5, 7, 9}));
  CHECK_THAT(linear[1], Approx(std::vector<double>{10, 11, 12, 13, 13}));  // the end: the nearest
  const auto previous = example::readCsvColumns(path, {"a", "b"}, example::Fill::Previous);
  CHECK(previous[0] == std::vector<double>{1, 1, 1, 7, 9});
  CHECK(previous[1] == std::vector<double>{10, 11, 11, 13, 13});
  const auto dropped = example::readCsvColumns(path, {"a", "b"}, example::Fill::Drop);
  CHECK(dropped[0] == std::vector<double>{1, 7});
  CHECK(dropped[1] == std::vector<double>{10, 13});
  // A gap at the start takes the first value after it, whichever filling.
  const std::string start = writeCsv("start.csv", "a\nnull\nNaN\n4\n6\n");
  CHECK(example::readCsvColumns(start, {"a"}, example::Fill::Linear)[0] ==
        std::vector<double>{4, 4, 4, 6});
  CHECK(example::readCsvColumns(start, {"a"}, example::Fill::Previous)[0] ==
        std::vector<double>{4, 4, 4, 6});
  const std::string empty = writeCsv("empty_column.csv", "a,b\n,1\n,2\n");
  CHECK_THROWS_WITH(example::readCsvColumns(empty, {"a"}, example::Fill::Linear),
                    Catch::Contains("column 'a' has no values, only gaps"));
  CHECK_THROWS_WITH(example::parseFill("nearest"),
                    Catch::Contains("--fill must be linear, previous or drop, got 'nearest'"));
}

TEST_CASE("a short series halves the chunk layout in turn until it fits twice", "[example]") {
  // 309 yearly values: a training part of 216, 215 input-target pairs one step ahead.
  const example::Chunks fitted = example::fitChunks(215, {8, 32}, false, false);
  CHECK(fitted.streams == 4);
  CHECK(fitted.steps == 16);
  // A long series keeps the defaults.
  const example::Chunks kept = example::fitChunks(4199, {8, 32}, false, false);
  CHECK(kept.streams == 8);
  CHECK(kept.steps == 32);
  // What the caller set is not touched: only the other one shrinks.
  const example::Chunks stepsOnly = example::fitChunks(215, {8, 32}, true, false);
  CHECK(stepsOnly.streams == 8);
  CHECK(stepsOnly.steps == 8);
  // No fewer than 4 steps, nor fewer streams than asked (the processes of a distributed run).
  const example::Chunks floor = example::fitChunks(10, {8, 32}, false, false, 2);
  CHECK(floor.streams == 2);
  CHECK(floor.steps == 4);
}

TEST_CASE("axis ticks are round values: 1, 2 or 5 x 10^k apart", "[example]") {
  CHECK(example::niceTicks(-4.83, 122.6) == std::vector<double>{0, 20, 40, 60, 80, 100, 120});
  CHECK(example::niceTicks(0, 46, 7) == std::vector<double>{0, 10, 20, 30, 40});
  CHECK(example::niceTicks(-4.83, 122.6, 6) == std::vector<double>{0, 50, 100});
  const std::vector<double> small = example::niceTicks(0.512, 0.538);
  REQUIRE(small.size() == 5);
  CHECK(small.front() == Approx(0.515));
  CHECK(small.back() == Approx(0.535));
  CHECK(example::fitTitle("a <b> & c", 100) == "a &lt;b&gt; &amp; c");
  CHECK(example::fitTitle("0123456789", 8) == "01234...");
}
