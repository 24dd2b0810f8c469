/* Shared by the example programs: stop with the library's message when a
 * call fails. */
#ifndef VQJ_EXAMPLES_COMMON_H
#define VQJ_EXAMPLES_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <vqjepa.h>

#define CHECK(call)                                                                            \
    do {                                                                                       \
        if ((call) != VQJ_OK) {                                                                \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, vqj_last_error());   \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

#endif
