#ifndef FACERI_UI_CENTRE_H
#define FACERI_UI_CENTRE_H
/* faceri model set-ui: the unrecognisable-identities (UI) centre of a model
 * (paper section 3.1, DESIGN §5, docs/UI_CENTRE.md), made from a set of UI faces
 * and stored in the model file's /ui_centre group. */

/* How the face is taken from each UI input before it is resized to the model input. */
typedef enum fr_face_region {
  FR_REGION_WHOLE = 0,   /* the whole image (after --crop, if given) */
  FR_REGION_HEAD = 1,    /* the head box of a pedestrian crop, scaled to the image size */
  FR_REGION_DEGRADE = 2, /* the whole image (after --crop) down to N x N pixels and back up */
} fr_face_region;

/* The head box in a 96x160 INRIA person crop (x, y, w, h), measured in docs/UI_CENTRE.md. */
#define FR_HEAD_BOX_X 36
#define FR_HEAD_BOX_Y 28
#define FR_HEAD_BOX_W 24
#define FR_HEAD_BOX_H 24
#define FR_HEAD_BOX_REF_W 96
#define FR_HEAD_BOX_REF_H 160

/* argv[0] is "set-ui"; returns an FR_EXIT_* code (commands.h). */
int fr_cmd_model_set_ui(int argc, char **argv);

#endif
