#include "mailcore/smtp/command.h"  // placeholder: implemented by the mailcore work
