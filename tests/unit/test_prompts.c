/* Prompts from labels: interior-most point and tight box. */
#include "test.h"

#include "core/error.h"
#include "core/rng.h"
#include "data/prompts.h"

static void point_is_centre_of_a_square(void) {
    uint8_t lab[20 * 30] = {0};
    for (int r = 3; r <= 9; r++)     /* 7x7 square centred at (x 15, y 6) */
        for (int c = 12; c <= 18; c++) lab[r * 30 + c] = 2;
    double x, y;
    CHECK(fs_prompt_point(lab, 20, 30, 2, &x, &y) == FS_OK);
    CHECK(x == 15 && y == 6);
    CHECK(fs_prompt_point(lab, 20, 30, 1, &x, &y) == FS_ERR);
}

static void point_prefers_the_thick_part(void) {
    /* A thin bar joined to a thick block: the point sits in the block, not at
     * the middle of the bounding box. */
    uint8_t lab[32 * 32] = {0};
    for (int c = 0; c < 20; c++) lab[5 * 32 + c] = 1;
    for (int r = 2; r <= 12; r++)
        for (int c = 20; c <= 30; c++) lab[r * 32 + c] = 1;
    double x, y;
    CHECK(fs_prompt_point(lab, 32, 32, 1, &x, &y) == FS_OK);
    CHECK(x == 25 && y == 7);
}

static void point_ties_go_first_in_row_major_order(void) {
    uint8_t lab[4 * 6] = {0};
    for (int c = 1; c <= 4; c++) lab[2 * 6 + c] = 1; /* a 1x4 bar: every pixel at distance 1 */
    double x, y;
    CHECK(fs_prompt_point(lab, 4, 6, 1, &x, &y) == FS_OK);
    CHECK(x == 1 && y == 2);
}

static void box_is_tight_and_jitter_bounded(void) {
    uint8_t lab[40 * 50] = {0};
    lab[10 * 50 + 7] = 3;
    lab[25 * 50 + 33] = 3;
    double b[4];
    CHECK(fs_prompt_box(lab, 40, 50, 3, 0, NULL, b) == FS_OK);
    CHECK(b[0] == 7 && b[1] == 10 && b[2] == 33 && b[3] == 25);
    fs_rng rng;
    fs_rng_init(&rng, 1, 0);
    int moved = 0;
    for (int t = 0; t < 100; t++) {
        double j[4];
        CHECK(fs_prompt_box(lab, 40, 50, 3, 5, &rng, j) == FS_OK);
        for (int i = 0; i < 4; i++) {
            CHECK(fabs(j[i] - b[i]) <= 5);
            moved |= j[i] != b[i];
        }
        CHECK(j[0] <= j[2] && j[1] <= j[3] && j[0] >= 0 && j[3] <= 39);
    }
    CHECK(moved);
}

int main(void) {
    RUN(point_is_centre_of_a_square);
    RUN(point_prefers_the_thick_part);
    RUN(point_ties_go_first_in_row_major_order);
    RUN(box_is_tight_and_jitter_bounded);
    TEST_EXIT();
}
