#ifndef FACERI_ITEM_STATUS_H
#define FACERI_ITEM_STATUS_H
/* What became of one input item: shared by the wire protocol (0..2 on the wire)
 * and the results file (where -1 marks a row not written yet). */

typedef enum fr_item_status {
  FR_ITEM_PENDING = -1, /* results file only: row not written yet */
  FR_ITEM_OK = 0,
  FR_ITEM_FAILED = 1,   /* could not be read, decoded, cropped or embedded: see the error text */
  FR_ITEM_SKIPPED = 2,  /* not an image (README, .info, ...) */
} fr_item_status;

#endif
