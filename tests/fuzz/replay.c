/* SPDX-License-Identifier: Apache-2.0 */
/* Replays fuzz inputs (seed corpus and kept crashers) through a fuzz target
 * without libFuzzer: every file of every directory named on the command line
 * is fed to LLVMFuzzerTestOneInput once. Missing directories are skipped. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct stat sb;
    uint8_t *buf;
    size_t n;
    if (f == NULL || fstat(fileno(f), &sb) < 0) {
        if (f != NULL) {
            fclose(f);
        }
        return -1;
    }
    buf = malloc((size_t)sb.st_size + 1);
    if (buf == NULL) {
        fclose(f);
        return -1;
    }
    n = fread(buf, 1, (size_t)sb.st_size, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int count = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        if (d == NULL) {
            continue;
        }
        while ((e = readdir(d)) != NULL) {
            char path[4096];
            struct stat sb;
            snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
            if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
                if (replay_file(path) < 0) {
                    fprintf(stderr, "cannot read %s\n", path);
                    closedir(d);
                    return 1;
                }
                count++;
            }
        }
        closedir(d);
    }
    printf("replayed %d inputs\n", count);
    return count > 0 ? 0 : 1;
}
