/* config_fuzz.c - libFuzzer target for the configuration loader: any bytes
 * as an ackd.conf. A loaded config is printed; the printed text must load
 * back and print the same (ackd_config_print's promise), except when a
 * printed line outgrows inih's line buffer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *print_to_string(const ackd_config_t *cfg)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f)
        abort();
    ackd_config_print(cfg, f);
    fclose(f);
    return s;
}

static void check_round_trip(const ackd_config_t *cfg)
{
    static char err[4096];
    char *printed = print_to_string(cfg);
    ackd_config_t again;
    if (ackd_config_load_string(&again, "printed", printed, NULL, err, sizeof err) != 0) {
        if (!strstr(err, "line is longer than")) {
            fprintf(stderr, "printed config does not load:\n%s\n---\n%s\n", err, printed);
            abort();
        }
        free(printed);
        return;
    }
    char *reprinted = print_to_string(&again);
    if (strcmp(printed, reprinted) != 0) {
        fprintf(stderr, "round trip differs:\n%s\n---\n%s\n", printed, reprinted);
        abort();
    }
    free(printed);
    free(reprinted);
    ackd_config_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    static char err[4096];
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    ackd_config_t cfg;
    if (ackd_config_load_string(&cfg, "fuzz.conf", text, NULL, err, sizeof err) == 0) {
        ackd_config_print(&cfg, devnull);
        check_round_trip(&cfg);
        ackd_config_free(&cfg);
    }
    free(text);
    return 0;
}
